"""The example scripts' plumbing: flags and their ranges, saving defaults, output folders and resumable checkpoints
(`launch`, `checkpoints`), and a dataset's tags reconciled with a tagger's labels (`labels`). Not shipped with
checkpoints."""
