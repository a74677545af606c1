"""The dashboard's screens: runs list, run view, compare, queue/GPUs, logs, and the modal dialogs."""
