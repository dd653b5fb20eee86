"""Can a learner see what its teacher targets? The expert's targets in view or not, as it drives and as a policy does.

    python benchmarks/teacher_sight.py [--worlds 6] [--steps 600] [--policy-worlds 4] [--terrain hills]
        [--explore walk] [--organism blockworld-chopper] [--out benchmarks/results/teacher_sight.json]

For each teacher (`ChopperExpert(sight="oracle")`, the default that taught the shipped organism, and
`sight="visible"`), on held-out worlds of `--terrain` (seeds 1000 up, 128x128):
- driving itself: logs broken per episode, and the share of steps whose target's centre lies more than
  `HALF_VIEW` degrees from the view direction (outside the 70-degree view);
- labelling the states a shipped organism (`--organism`) drives into, as DAgger does, in those
  worlds and in `tree_at_spot` (`--policy-worlds 0` skips this): the share of labels whose target is outside
  the view, and of exploring labels, and how far the exploring labels turn the view sideways (a turn back to
  a remembered heading is one more label the learner cannot predict).
A label towards a target outside the view is one a learner cannot predict from its frames. With `--explore look`
each teacher looks around before it walks when nothing is in sight (`ChopperExpert(explore="look")`).
"""

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from vptlens.agents import load_policy, preprocess_frames
from vptlens.agents.actions import factored_to_minerl
from vptlens.agents.distributions import sample_actions
from vptlens.agents.zoo import ZOO, get_zoo_entry, shipped_files
from vptlens.envs.blockworld import BlockWorldEnv
from vptlens.envs.blockworld.world import TERRAINS
from vptlens.training.expert import EXPLORES, SIGHTS, ChopperExpert, view_error

HALF_VIEW = 35.0
"""Degrees: half BlockWorld's 70-degree field of view."""


def _where(env: BlockWorldEnv, expert: ChopperExpert) -> str:
    if expert.target is None:
        return "exploring"
    centre = np.asarray(expert.target, float) + 0.5
    return "out_of_view" if view_error(env.world, centre) > HALF_VIEW else "in_view"


def teacher_drives(sight: str, seeds: list[int], steps: int, terrain: str, explore: str) -> dict:
    counts = {"in_view": 0, "out_of_view": 0, "exploring": 0}
    logs = []
    for seed in seeds:
        env = BlockWorldEnv(height=128, width=128, terrain=terrain)
        _, info = env.reset(seed=seed)
        expert, n = ChopperExpert(seed, sight=sight, explore=explore), 0
        for _ in range(steps):
            action = expert.act(env, info)
            counts[_where(env, expert)] += 1
            _, _, terminated, truncated, info = env.step(action)
            n += sum(e["type"] == "block_broken" and e["block"].endswith("_log") for e in info["events"])
            if terminated or truncated:
                break
        logs.append(n)
    return {"logs_per_episode": logs, "mean_logs": float(np.mean(logs)), "targets": counts}


def policy_drives(
    policy, sight: str, seeds: list[int], steps: int, scene: str | None, terrain: str, explore: str
) -> dict:
    counts = {"in_view": 0, "out_of_view": 0, "exploring": 0}
    exploring_turns = []  # degrees the label turns the view sideways, on exploring steps
    generator = torch.Generator().manual_seed(0)
    for seed in seeds:
        env = BlockWorldEnv(height=128, width=128, terrain=terrain)
        obs, info = env.reset(seed=seed, options={"scene": scene} if scene else None)
        expert = ChopperExpert(seed, sight=sight, explore=explore)
        state, first = policy.initial_state(1), torch.ones(1, dtype=torch.bool)
        for _ in range(steps):
            label = expert.act(env, info)  # the label DAgger would train on; the policy's action is taken
            where = _where(env, expert)
            counts[where] += 1
            if where == "exploring":
                exploring_turns.append(abs(float(label["camera"][1])))
            with torch.no_grad():
                frame = preprocess_frames(obs["pov"][None], policy.cfg.img_shape[:2])  # the policy's input size
                out, state = policy.step(torch.from_numpy(frame), first, state)
            first[:] = False
            buttons, camera = sample_actions(out, generator=generator)
            obs, _, terminated, truncated, info = env.step(factored_to_minerl(buttons.numpy(), camera.numpy())[0])
            if terminated or truncated:
                break
    mean_turn = float(np.mean(exploring_turns)) if exploring_turns else None
    return {"scene": scene or terrain, "targets": counts, "exploring_mean_abs_yaw_degrees": mean_turn}


def _share(counts: dict) -> str:
    total = sum(counts.values())
    return ", ".join(f"{k} {v}/{total} ({v / total:.0%})" for k, v in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", type=int, default=6, help="worlds the teacher drives in")
    parser.add_argument("--policy-worlds", type=int, default=4, help="worlds per scene the organism drives (0: none)")
    parser.add_argument("--terrain", choices=TERRAINS, default="hills", help="BlockWorld terrain of the worlds")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--explore", choices=EXPLORES, default="walk", help="the teachers with nothing in sight")
    parser.add_argument("--organism", default="blockworld-chopper", help="the zoo organism that drives (labelling)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_sight.json"))
    args = parser.parse_args()
    if min(args.worlds, args.steps) < 1 or args.policy_worlds < 0:
        raise SystemExit("--worlds and --steps must be at least 1, --policy-worlds at least 0")
    if args.organism not in ZOO or get_zoo_entry(args.organism).kind != "organism":
        parser.error(f"--organism {args.organism!r}: give a shipped organism (`vptlens zoo`)")
    torch.set_num_threads(1)
    files = shipped_files(get_zoo_entry(args.organism))
    organism = load_policy(files["model"], files["weights"])
    result = {"machine": {"platform": platform.platform()}, "half_view_degrees": HALF_VIEW, "steps": args.steps,
              "terrain": args.terrain, "explore": args.explore, "organism": args.organism}  # fmt: skip
    for sight in SIGHTS:
        own = teacher_drives(sight, list(range(1000, 1000 + args.worlds)), args.steps, args.terrain, args.explore)
        print(f"{sight}, driving: {own['mean_logs']:.2f} logs per episode {own['logs_per_episode']}; "
              f"{_share(own['targets'])}", flush=True)  # fmt: skip
        seeds = list(range(1000, 1000 + args.policy_worlds))
        labelled = [policy_drives(organism, sight, seeds, args.steps, scene, args.terrain, args.explore)
                    for scene in (None, "tree_at_spot") if seeds]  # fmt: skip
        for row in labelled:
            turn = row["exploring_mean_abs_yaw_degrees"]
            print(f"{sight}, labelling the organism in {row['scene']}: {_share(row['targets'])}; exploring labels "
                  f"turn {'-' if turn is None else f'{turn:.1f}'} degrees a step", flush=True)  # fmt: skip
        result[sight] = {"teacher_drives": own, "organism_drives": labelled}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
