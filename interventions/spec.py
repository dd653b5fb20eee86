"""Experiments as data: a YAML/JSON spec of agents x scenes x edits x seeds, validated before any work.

    name: villager_study
    agents:
    - {name: tiny, model: agent.model, weights: agent.weights}   # or zoo: NAME
    # - {name: expert, scripted: chopper}                      # a scripted agent (the organism's teacher)
    # - {name: blind, blind: tiny}                             # tiny's actions replayed whatever it sees
    env: {kind: blockworld, height: 128, width: 128}
    scenes: [villager_under_leaves, villager_in_open]          # built-in names, files, or templates:
    #  - {name: librarian, template: villager.yaml.tmpl, vars: {profession: librarian}}
    edits:
    - {name: none, kind: none}
    - {name: ablate_L1, kind: head_ablation, heads: ["1.*"], mode: zero}
    control: {scene: villager_in_open, edit: none}             # what every cell is compared with
    seeds: {start: 0, count: 8}                                # the same seeds in every cell: paired
    n_steps: 200
    metrics: [target_hit, hits, steps_to_first_hit]

Every cell (one agent, one scene, one edit) records `seeds.count` episodes with seeds
start..start+count-1, so a cell and its control differ only by the factor that varies. Every
problem in a spec is reported at once, each with its fix (`SpecError`). Relative paths in a
spec resolve against the spec file's directory.
"""

import dataclasses
import difflib
import itertools
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vptlens.agents.mineclip_tokenizer import tokenize
from vptlens.envs.blockworld import BlockWorldConfig
from vptlens.envs.minerl_env import MineRLConfig
from vptlens.envs.scenes import Scene, SceneError, as_scene, list_builtin_scenes

FACTORS = ("agent", "scene", "edit")
_TOP_KEYS = {
    "name", "description", "agents", "env", "scenes", "edits", "control", "seeds", "n_steps", "n_envs", "metrics",
    "target", "hooks", "open_loop",
}  # fmt: skip
MAX_SPEC_BYTES = 1 << 20


class SpecError(ValueError):
    """An experiment spec has problems; the message lists every one with its fix."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = problems
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        super().__init__(f"{where}: {len(problems)} problem(s): {listed}")


SCRIPTED_AGENTS = ("chopper",)
"""Scripted agents an experiment can run (`vptlens.training.expert`), by name."""


@dataclass(frozen=True)
class AgentSpec:
    """One agent: its files (or a zoo name, or a scripted agent), and for STEVE-1 its goal embedding and guidance
    scale."""

    name: str
    model: Path | None = None
    weights: Path | None = None
    zoo: str | None = None
    scripted: str | None = None
    """A scripted agent instead of a policy (`chopper`: the model organism's teacher); only the edit `none`."""
    blind: str | None = None
    """The input-blind control of another agent (its name): per seed, that agent's MineRL actions as recorded in
    `blind_scene` are replayed whatever the env shows, so what differs between scenes comes from geometry alone."""
    blind_scene: str | None = None
    """The scene level whose recordings the blind control replays (default: the control scene)."""
    checkpoint_dir: Path = Path("checkpoints")
    prompt: str | None = None
    """STEVE-1: the goal as text (MineCLIP and the prior from `checkpoint_dir`, or `mineclip` and `prior`)."""
    goal_video: Path | None = None
    """STEVE-1: the goal as a 20 fps clip (its last 16 frames)."""
    goal: Path | None = None
    """STEVE-1: the goal as a .npy embedding."""
    goal_seed: int = 0
    """STEVE-1 with a prompt: the seed of the prior's latent."""
    mineclip: Path | None = None
    prior: Path | None = None
    cond_scale: float | None = None

    @property
    def has_goal(self) -> bool:
        return any(x is not None for x in (self.prompt, self.goal_video, self.goal))

    @property
    def is_policy(self) -> bool:
        """A network (files or zoo) rather than a scripted agent or a blind replay: it can be edited and replayed."""
        return self.scripted is None and self.blind is None


@dataclass(frozen=True)
class SceneLevel:
    """A scene factor level: a built-in scene or a file (`scene`), or a template file with `${var}` placeholders."""

    name: str
    scene: str | None = None
    template: Path | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self) -> Scene:
        if self.template is None:
            return as_scene(self.scene)
        text = string.Template(self.template.read_text()).substitute({k: str(v) for k, v in self.vars.items()})
        data = yaml.safe_load(text)
        if isinstance(data, dict):
            data = {**data, "name": self.name}
        return Scene.from_dict(data)


@dataclass(frozen=True)
class EditLevel:
    """An activation-edit factor level: a name and the edit's spec (`vptlens.interventions.edits`).

    A level written with `sweep: {strength: [0.5, 1, 2]}` expands into one level per value
    (`steer@strength=0.5` ...), each remembering its sweep for the dose-response analysis.
    """

    name: str
    spec: Mapping[str, Any]
    sweep: str | None = None
    """The name of the sweep this level belongs to (the level's name before expansion)."""
    sweep_param: str | None = None
    sweep_value: float | None = None

    def make(self):
        from vptlens.interventions.edits import edit_from_dict

        return edit_from_dict(dict(self.spec))


@dataclass(frozen=True)
class Cell:
    """One condition of the grid: a level of every factor."""

    index: int
    agent: AgentSpec
    scene: SceneLevel
    edit: EditLevel

    @property
    def levels(self) -> dict[str, str]:
        return {"agent": self.agent.name, "scene": self.scene.name, "edit": self.edit.name}

    @property
    def dir_name(self) -> str:
        return f"cell_{self.index:03d}"

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.levels.items())


@dataclass(frozen=True)
class ExperimentSpec:
    """A whole experiment (see the module's docstring for the file format)."""

    name: str
    agents: tuple[AgentSpec, ...]
    scenes: tuple[SceneLevel, ...]
    edits: tuple[EditLevel, ...]
    env: BlockWorldConfig | MineRLConfig = field(default_factory=lambda: BlockWorldConfig(height=128, width=128))
    control: Mapping[str, str] = field(default_factory=dict)
    """The control level of each factor (default: its first level); every cell is compared with the cell that
    differs from it in one factor, set to its control level."""
    seed_start: int = 0
    n_seeds: int = 8
    n_steps: int = 200
    n_envs: int = 1
    metrics: tuple[str, ...] = ("target_hit", "target_killed", "steps_to_first_hit", "hits")
    target_tag: str = "target"
    hooks: tuple[str, ...] = ()
    """Activations to store in every episode besides attention (none by default: experiments are many episodes)."""
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The spec as read, for provenance."""
    open_loop: bool = False
    """Also apply every edit open-loop to the control cell's recorded episodes (through the replayer): the change
    in P(attack) and the KL of both heads at every step, without the behaviour diverging."""
    base_dir: Path = field(default=Path("."), compare=False)
    """Where the spec's relative paths start (its file's directory)."""

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed_start, self.seed_start + self.n_seeds))

    def control_level(self, factor: str) -> str:
        levels = {"agent": self.agents, "scene": self.scenes, "edit": self.edits}[factor]
        return self.control.get(factor, levels[0].name)

    def cells(self) -> list[Cell]:
        grid = itertools.product(self.agents, self.scenes, self.edits)
        return [Cell(i, agent, scene, edit) for i, (agent, scene, edit) in enumerate(grid)]

    def blind_source(self, cell: Cell) -> Cell:
        """The cell whose episodes a blind control's cell replays: its agent, in `blind_scene`, the same edit."""
        scene = cell.agent.blind_scene or self.control_level("scene")
        wanted = {**cell.levels, "agent": cell.agent.blind, "scene": scene}
        return next(c for c in self.cells() if c.levels == wanted)

    def control_of(self, cell: Cell, factor: str) -> Cell | None:
        """The cell equal to `cell` except that `factor` is at its control level (None if `cell` is that cell)."""
        wanted = {**cell.levels, factor: self.control_level(factor)}
        if wanted == cell.levels:
            return None
        return next(c for c in self.cells() if c.levels == wanted)


# ------------------------------------------------------------------------------------------------ parsing


def _suggest(name: str, valid) -> str:
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + f"(valid: {', '.join(sorted(valid))})"


def _path(raw: Any, base: Path) -> Path:
    path = Path(str(raw)).expanduser()
    return path if path.is_absolute() else base / path


def _agents(raw: Any, base: Path, problems: list[str]) -> list[AgentSpec]:
    if not isinstance(raw, list) or not raw:
        problems.append("agents: give a list of agents, e.g. [{name: vpt, model: a.model, weights: a.weights}]")
        return []
    fields = {f.name for f in dataclasses.fields(AgentSpec)}
    agents = []
    for i, d in enumerate(raw):
        where = f"agents[{i}]"
        if not isinstance(d, dict):
            problems.append(f"{where}: give a mapping with name and model/weights or zoo")
            continue
        for key in sorted(set(d) - fields):
            problems.append(f"{where}: unknown key {key!r}; {_suggest(key, fields)}")
        name = str(d.get("name", f"agent{i}"))
        kw: dict[str, Any] = {"name": name}
        for key in ("model", "weights", "goal", "goal_video", "mineclip", "prior", "checkpoint_dir"):
            if d.get(key) is not None:
                kw[key] = _path(d[key], base)
        if d.get("prompt") is not None:
            kw["prompt"] = str(d["prompt"])
            try:
                tokenize(kw["prompt"])
            except (ValueError, ModuleNotFoundError, FileNotFoundError) as e:
                problems.append(f"{where}.prompt: {e}")
        if d.get("goal_seed") is not None:
            if isinstance(d["goal_seed"], bool) or not isinstance(d["goal_seed"], int):
                problems.append(f"{where}.goal_seed: {d['goal_seed']!r} is not an integer")
            else:
                kw["goal_seed"] = d["goal_seed"]
        kw["zoo"] = d.get("zoo")
        kw["scripted"] = d.get("scripted")
        kw["blind"] = None if d.get("blind") is None else str(d["blind"])
        kw["blind_scene"] = None if d.get("blind_scene") is None else str(d["blind_scene"])
        if d.get("cond_scale") is not None:
            try:
                kw["cond_scale"] = float(d["cond_scale"])
            except (TypeError, ValueError):
                problems.append(f"{where}.cond_scale: {d['cond_scale']!r} is not a number")
        agent = AgentSpec(**kw)
        if sum(x is not None for x in (agent.prompt, agent.goal_video, agent.goal)) > 1:
            problems.append(f"{where} ({name}): give one goal: prompt, goal_video or goal")
        files = agent.model is not None or agent.weights is not None
        if sum([agent.zoo is not None, files, agent.scripted is not None, agent.blind is not None]) != 1 or (
            files and (agent.model is None or agent.weights is None)
        ):
            problems.append(f"{where} ({name}): give model and weights, or zoo, or scripted, or blind (one of them)")
        if agent.scripted is not None and agent.scripted not in SCRIPTED_AGENTS:
            known = ", ".join(SCRIPTED_AGENTS)
            problems.append(f"{where}.scripted: {agent.scripted!r} unknown; scripted agents: {known}")
        for key in ("model", "weights", "goal", "goal_video", "mineclip", "prior"):
            path = getattr(agent, key)
            if path is not None and not path.is_file():
                problems.append(
                    f"{where}.{key}: no such file {str(path)!r} (relative paths start at the spec's folder)"
                )
        if agent.zoo is not None:
            from vptlens.agents.zoo import get_zoo_entry

            try:
                get_zoo_entry(agent.zoo)
            except (KeyError, ValueError) as e:
                problems.append(f"{where}.zoo: {e.args[0] if e.args else e}")
        agents.append(agent)
    names = [a.name for a in agents]
    for agent in agents:
        if agent.blind is not None and agent.blind not in {a.name for a in agents if a.is_policy}:
            problems.append(f"agent {agent.name}: blind: {agent.blind!r} is not a policy agent of this spec")
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"agents: the name {name!r} is used twice; give each agent its own name")
    return agents


def _env(raw: Any, problems: list[str]) -> BlockWorldConfig | MineRLConfig:
    if raw is None:
        return BlockWorldConfig(height=128, width=128)
    if not isinstance(raw, dict):
        problems.append("env: give a mapping, e.g. {kind: blockworld, height: 128, width: 128}")
        return BlockWorldConfig(height=128, width=128)
    kinds = {"blockworld": BlockWorldConfig, "minerl": MineRLConfig}
    kind = raw.get("kind", "blockworld")
    if kind not in kinds:
        problems.append(f"env.kind: {kind!r} unknown; {_suggest(kind, kinds)}")
        return BlockWorldConfig(height=128, width=128)
    cls = kinds[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    settings = {k: v for k, v in raw.items() if k != "kind"}
    for key in sorted(set(settings) - fields):
        problems.append(f"env.{key}: unknown {kind} setting; {_suggest(key, fields)}")
    try:
        return cls(**{k: v for k, v in settings.items() if k in fields})
    except (TypeError, ValueError) as e:
        problems.append(f"env: {e}")
        return BlockWorldConfig(height=128, width=128)


def _scenes(raw: Any, base: Path, problems: list[str]) -> list[SceneLevel]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"scenes: give a list of scenes (built-in: {', '.join(list_builtin_scenes())})")
        return []
    levels = []
    for i, d in enumerate(raw):
        where = f"scenes[{i}]"
        if isinstance(d, str):
            d = {"scene": d}
        if not isinstance(d, dict):
            problems.append(f"{where}: a scene name, a file, or {{name, template, vars}}")
            continue
        for key in sorted(set(d) - {"name", "scene", "template", "vars"}):
            problems.append(f"{where}: unknown key {key!r}; use name, scene, or template with vars")
        if (d.get("scene") is None) == (d.get("template") is None):
            problems.append(f"{where}: give a scene (a name or file) or a template (with vars), one of them")
            continue
        if d.get("scene") is not None:
            ref = str(d["scene"])
            scene_ref = str(_path(ref, base)) if ref.endswith((".yaml", ".yml", ".json")) else ref
            level = SceneLevel(name=str(d.get("name", Path(ref).stem)), scene=scene_ref)
        else:
            template = _path(d["template"], base)
            variables = d.get("vars") or {}
            if not isinstance(variables, dict):
                problems.append(f"{where}.vars: give a mapping of template variables")
                continue
            name = str(d.get("name") or "_".join(f"{k}-{v}" for k, v in variables.items()) or template.stem)
            level = SceneLevel(name=name, template=template, vars=variables)
            if not template.is_file():
                problems.append(f"{where}.template: no such file {str(template)!r}")
                continue
            missing = _template_variables(template.read_text()) - set(variables)
            if missing:
                problems.append(f"{where}: the template uses undefined variable(s) {sorted(missing)}; set them in vars")
                continue
        try:
            level.resolve()
        except (SceneError, KeyError, FileNotFoundError, ValueError) as e:
            problems.append(f"{where}: {e.args[0] if isinstance(e, KeyError) and e.args else e}")
            continue
        levels.append(level)
    return _unique(levels, "scenes", problems)


def _template_variables(text: str) -> set[str]:
    found = set()
    for match in string.Template.pattern.finditer(text):
        name = match.group("named") or match.group("braced")
        if name:
            found.add(name)
    return found


_EDIT_PATHS = ("mean_path", "profile_path", "sae_dir", "vector_path", "source_episode")
"""Edit fields that name files: relative ones start at the spec file, like every path of a spec."""


def _edits(raw: Any, base: Path, problems: list[str]) -> list[EditLevel]:
    if raw is None:
        return [EditLevel("none", {"kind": "none"})]
    if not isinstance(raw, list) or not raw:
        problems.append("edits: give a list of edits, e.g. [{name: none, kind: none}]")
        return []
    levels = []
    for i, d in enumerate(raw):
        if not isinstance(d, dict):
            problems.append(f"edits[{i}]: give a mapping with a kind, e.g. {{kind: head_ablation, heads: ['1.*']}}")
            continue
        spec = {k: (str(_path(v, base)) if k in _EDIT_PATHS and v is not None else v) for k, v in d.items()}
        spec.pop("name", None)
        name = str(d.get("name", spec.get("kind", f"edit{i}")))
        sweep = spec.pop("sweep", None)
        if sweep is None:
            expanded = [EditLevel(name, spec)]
        elif (
            not isinstance(sweep, dict)
            or len(sweep) != 1
            or not isinstance(next(iter(sweep.values())), list)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in next(iter(sweep.values())))
        ):
            problems.append(f"edits[{i}] ({name}).sweep: give one field and its numbers, e.g. {{strength: [0, 1, 2]}}")
            continue
        else:
            ((param, values),) = sweep.items()
            expanded = [EditLevel(f"{name}@{param}={v:g}", {**spec, param: v}, name, param, float(v)) for v in values]
        for level in expanded:
            try:
                level.make()
            except (ValueError, KeyError, TypeError) as e:
                problems.append(f"edits[{i}] ({level.name}): {e.args[0] if isinstance(e, KeyError) and e.args else e}")
                break
            levels.append(level)
    return _unique(levels, "edits", problems)


def _unique(levels: list, what: str, problems: list[str]) -> list:
    names = [lv.name for lv in levels]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{what}: two levels are named {name!r}; give each a distinct name")
    return levels


def spec_from_dict(d: Any, base_dir: Path = Path("."), where: str = "spec") -> ExperimentSpec:
    """Build and validate a spec; raises `SpecError` listing every problem."""
    problems: list[str] = []
    if not isinstance(d, dict):
        raise SpecError(where, ["the spec must be a mapping (see `vptlens experiment run --help`)"])
    for key in sorted(set(d) - _TOP_KEYS):
        problems.append(f"unknown key {key!r}; {_suggest(key, _TOP_KEYS)}")
    agents = _agents(d.get("agents"), base_dir, problems)
    env = _env(d.get("env"), problems)
    scenes = _scenes(d.get("scenes"), base_dir, problems)
    edits = _edits(d.get("edits"), base_dir, problems)
    kw: dict[str, Any] = {}
    seeds = d.get("seeds", {"start": 0, "count": 8})
    if not isinstance(seeds, dict) or not all(isinstance(seeds.get(k, 0), int) for k in ("start", "count")):
        problems.append("seeds: give {start: 0, count: 8} (whole numbers)")
    else:
        kw["seed_start"], kw["n_seeds"] = int(seeds.get("start", 0)), int(seeds.get("count", 8))
        if kw["n_seeds"] < 1:
            problems.append(f"seeds.count: {kw['n_seeds']}; give at least 1 episode per cell")
    for key, lo in (("n_steps", 1), ("n_envs", 1)):
        if key in d:
            if not isinstance(d[key], int) or isinstance(d[key], bool) or d[key] < lo:
                problems.append(f"{key}: {d[key]!r}; give a whole number >= {lo}")
            else:
                kw[key] = d[key]
    if "metrics" in d:
        from vptlens.interventions.metrics import list_metrics

        metrics = d["metrics"] if isinstance(d["metrics"], list) else [d["metrics"]]
        known = list_metrics()
        for m in metrics:
            if m not in known:
                problems.append(f"metrics: unknown metric {m!r}; {_suggest(m, known)}")
        kw["metrics"] = tuple(str(m) for m in metrics)
    if "hooks" in d:
        kw["hooks"] = tuple(str(h) for h in (d["hooks"] if isinstance(d["hooks"], list) else [d["hooks"]]))
    if "target" in d:
        target = d["target"]
        if not isinstance(target, dict) or not isinstance(target.get("tag"), str):
            problems.append("target: give {tag: target} (the tag the scene summons the studied mob with)")
        else:
            kw["target_tag"] = target["tag"]
    if "open_loop" in d:
        if not isinstance(d["open_loop"], bool):
            problems.append(f"open_loop: {d['open_loop']!r}; give true or false")
        else:
            kw["open_loop"] = d["open_loop"]
    control = d.get("control") or {}
    if not isinstance(control, dict):
        problems.append("control: give a mapping of factor -> level, e.g. {scene: villager_in_open, edit: none}")
        control = {}
    levels = {"agent": [a.name for a in agents], "scene": [s.name for s in scenes], "edit": [e.name for e in edits]}
    for agent in agents:
        if agent.blind_scene is not None and agent.blind_scene not in levels["scene"]:
            problems.append(f"agent {agent.name}: blind_scene {agent.blind_scene!r} is not a scene level of the spec")
    for factor, level in control.items():
        if factor not in FACTORS:
            problems.append(f"control: unknown factor {factor!r}; {_suggest(factor, FACTORS)}")
        elif str(level) not in levels[factor] and levels[factor]:
            problems.append(f"control.{factor}: {level!r} is not a level; {_suggest(level, levels[factor])}")
    if problems:
        raise SpecError(where, problems)
    return ExperimentSpec(
        name=str(d.get("name", "experiment")),
        description=str(d.get("description", "")),
        agents=tuple(agents),
        scenes=tuple(scenes),
        edits=tuple(edits),
        env=env,
        control={k: str(v) for k, v in control.items()},
        raw=json.loads(json.dumps(d, default=str)),
        base_dir=Path(base_dir).resolve(),
        **kw,
    )


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a spec file (YAML or JSON) and validate it; `SpecError` lists every problem."""
    path = Path(path)
    if not path.is_file():
        builtin = Path(__file__).parent / "specs" / f"{path}.yaml"
        if builtin.is_file():
            path = builtin
        else:
            names = ", ".join(list_builtin_specs())
            raise FileNotFoundError(f"{path}: no such spec file (built-in specs load by name: {names})")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(str(path), [f"{path.stat().st_size:,} bytes is far too large for an experiment spec"])
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise SpecError(str(path), [f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}"]) from e
    return spec_from_dict(data, path.parent, str(path))


def list_builtin_specs() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "specs").glob("*.yaml"))
