"""`vptlens train expert-demos`: episodes of the scripted expert, recorded into the episode store.

A demonstration run is a normal run (PROTOCOL.md) whose agent is `scripted: chopper`: frames, the expert's
actions (MineRL keys and VPT classes) and the ground truth, without policy outputs. It is for looking at what the
organism is taught (`vptlens serve`, probes on the ground truth, the experiment metrics) and for measuring the
expert; `vptlens train bc` does not need it (it generates its demonstrations on the fly).
"""

from dataclasses import dataclass
from pathlib import Path

from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.recordings.recorder import RecordConfig, Recorder
from vptlens.training.expert import ChopperExpert

EXPERT_NAME = "chopper"


@dataclass(frozen=True)
class ExpertDemosConfig:
    """Record the scripted tree-chopping expert in BlockWorld."""

    out: Path
    """Run directory."""
    n_episodes: int = 4
    """Episodes to record."""
    n_steps: int = 1000
    """Steps per episode."""
    seed: int = 0
    """Episode i uses world seed `seed + i` (training uses seeds from 1,000,000 up; below is held out)."""
    scene: str | None = None
    """A built-in scene name or a scene file applied at every reset."""
    env: BlockWorldConfig = BlockWorldConfig(height=128, width=128)
    """BlockWorld's settings (--env.height, --env.terrain ...); the organism is trained at 128x128."""
    n_envs: int = 2
    """Environments stepped side by side."""
    full_frames: bool = False
    """Also store the env's full-resolution frames."""
    resume: bool = False
    """Keep complete episodes of an existing run and record the rest."""
    overwrite: bool = False
    """Delete an existing run in --out and record afresh."""

    def record_config(self) -> RecordConfig:
        return RecordConfig(
            scripted=EXPERT_NAME,
            out=self.out,
            env=self.env,
            scene=self.scene,
            n_episodes=self.n_episodes,
            n_steps=self.n_steps,
            n_envs=self.n_envs,
            seed=self.seed,
            full_frames=self.full_frames,
            hooks=(),
            resume=self.resume,
            overwrite=self.overwrite,
        )

    def __post_init__(self):
        self.record_config()  # every option checked before anything is written


def expert_actor(seed: int) -> ChopperExpert:
    """One expert per episode, seeded by the episode's seed."""
    return ChopperExpert(seed=seed)


def main(cfg: ExpertDemosConfig) -> dict:
    recorder = Recorder(cfg.record_config(), actor=expert_actor)
    summary = recorder.run()
    print(summary["text"])
    if recorder.interrupted:
        raise SystemExit(130)
    return summary
