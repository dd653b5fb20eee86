"""MineRL 1.0's human action space, named once for the agents and the envs (which may not import each other)."""

MINERL_BUTTONS: tuple[str, ...] = (
    "forward", "back", "left", "right", "jump", "sneak", "sprint", "attack", "use", "drop", "inventory", "ESC",
    *(f"hotbar.{i}" for i in range(1, 10)), "pickItem", "swapHands",
)  # fmt: skip
"""Every binary key of MineRL 1.0's human action space, in MineRL's order; with `CAMERA_KEY` these are all its keys."""

CAMERA_KEY = "camera"
"""The action key of the camera movement: [pitch, yaw] in degrees."""
