def init():
    raise RuntimeError("model file is corrupt (on purpose)")


def run(raw_data):
    return raw_data
