"""Names shared by BlockWorld and scenes: blocks, entities, professions, world extents.

Names are Minecraft 1.16 resource ids without the `minecraft:` namespace, so a scene
written for BlockWorld compiles unchanged to commands for the real game.

Coordinates follow Minecraft: y is up; block (x, y, z) fills [x, x+1) x [y, y+1) x [z, z+1);
yaw 0 faces +z (south), yaw 90 faces -x (west), yaw -90 / 270 faces +x (east); pitch is
positive looking down and clamped to [-90, 90].
"""

BLOCKS: tuple[str, ...] = (
    "air",
    "grass_block",
    "dirt",
    "stone",
    "cobblestone",
    "bedrock",
    "sand",
    "gravel",
    "oak_log",
    "birch_log",
    "oak_leaves",
    "birch_leaves",
    "oak_planks",
    "water",
    "grass",  # the tall-grass plant of 1.16 ("short_grass" in later versions)
    "dandelion",
    "poppy",
    "crafting_table",
    "glass",
)
"""Every block BlockWorld knows; index in this tuple is the block id stored in the voxel grid."""

BLOCK_ID: dict[str, int] = {name: i for i, name in enumerate(BLOCKS)}

ENTITY_TYPES: tuple[str, ...] = ("villager", "cow", "pig", "sheep", "zombie")

PROFESSIONS: tuple[str, ...] = (
    "none",
    "armorer",
    "butcher",
    "cartographer",
    "cleric",
    "farmer",
    "fisherman",
    "fletcher",
    "leatherworker",
    "librarian",
    "mason",
    "nitwit",
    "shepherd",
    "toolsmith",
    "weaponsmith",
)
"""Villager professions of Minecraft 1.16 (`VillagerData.profession`)."""

WORLD_SIZE_XZ = 128
"""BlockWorld spans x and z in [0, WORLD_SIZE_XZ)."""

WORLD_HEIGHT = 64
"""BlockWorld spans y in [0, WORLD_HEIGHT)."""

TICKS_PER_SECOND = 20
TICKS_PER_DAY = 24000
