state = {}


def init():
    state["init"] = "inner"


def run(raw_data):
    return {"from": "inner", "init": state.get("init"), "data": raw_data}
