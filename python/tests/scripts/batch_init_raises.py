"""init() fails: the batch worker exits 3 with the traceback on stderr."""


def init():
    raise RuntimeError("no model in this folder")


def run(mini_batch):
    return mini_batch
