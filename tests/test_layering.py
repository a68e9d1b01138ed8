"""The package's imports run one way: each module imports only modules of its own layer or below.

The layers, from the bottom (a module may import any module listed before its own layer):

 1. `cql_sac` (the package root: `__version__`), `cql_sac.cli` (absl flag helpers),
    `cql_sac.summaries` (reading TensorBoard scalars), `cql_sac.files` (files written whole),
    `cql_sac.run_record` (a run's root_dir/run_record.json), `cql_sac.run_lock` (one run per
    output directory) and `cql_sac.checkpoints` (damaged checkpoints set aside, policy
    checkpoints written whole, write failures in one line): no cql_sac imports but each
    other's.
 2. `cql_sac.tasks`: the D4RL task registry (names, gym ids, time limits, score constants), and
    `cql_sac.minari_tasks`: where Minari datasets live, their environments and scores.
 3. `cql_sac.envs`: the gymnasium simulators of those tasks as TF-Agents environments.
 4. `cql_sac.critic_network`: the multi-action critic and Q-value helpers.
 5. `cql_sac.networks`: the network factory (and `ObservationStatistics`, its input).
 6. `cql_sac.agents`: the CQL and Cal-QL math (`cql_math`) and the agents.
 7. `cql_sac.datasets`: RLDS reading and writing, transition items (keyed as the agents
    read them), validation, normalization, returns-to-go, Reverb and in-memory replay.
 8. `cql_sac.learner`: K agent steps per compiled call, sampling the replay; `cql_sac.ope`:
    offline policy evaluation (Fitted Q Evaluation and the trained critics' estimates), and
    `cql_sac.model_ope`: the dynamics-model estimate, `cql_sac.model_rollouts`: COMBO's
    rollouts of the policy in that model, and `cql_sac.policy_rollback`: the actor rolled
    back to its best model rating during training.
 9. `cql_sac.policies`: the Q-filtered policy and policy export.
10. `cql_sac.eval`: evaluation in the real environment and `cql_sac_eval`.
11. `cql_sac.recording`: recording datasets with behaviour policies (`cql_sac_make_dataset`,
    `cql_sac_make_behavior`).
12. `cql_sac.finetune`: the online phase of fine-tuning.
13. `cql_sac.config_checks`: the training binary's checks of its arguments.
14. `cql_sac.run_config`: the run's resolved configuration, kept and checked on resume.
15. `cql_sac.train_eval`: the training binary, which wires all of the above.
16. `cql_sac.select`: `cql_sac_select`, choosing a run's checkpoint offline.

Inside one layer (e.g. the modules of `cql_sac.datasets`) imports are free, but no module
may reach itself again through its imports (no cycle). Every import counts, also those
inside functions. A new module must be given a layer here.
"""

import ast
import pathlib
from typing import Dict, List, Set

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent.parent / 'cql_sac'

LAYERS = (
    ('cql_sac', 'cql_sac.cli', 'cql_sac.summaries', 'cql_sac.files', 'cql_sac.run_record',
     'cql_sac.run_lock', 'cql_sac.checkpoints'),
    ('cql_sac.tasks', 'cql_sac.minari_tasks'),
    ('cql_sac.envs',),
    ('cql_sac.critic_network',),
    ('cql_sac.networks',),
    ('cql_sac.agents',),
    ('cql_sac.datasets',),
    ('cql_sac.learner', 'cql_sac.ope', 'cql_sac.model_ope', 'cql_sac.model_rollouts',
     'cql_sac.policy_rollback'),
    ('cql_sac.policies',),
    ('cql_sac.eval',),
    ('cql_sac.recording',),
    ('cql_sac.finetune',),
    ('cql_sac.config_checks',),
    ('cql_sac.run_config',),
    ('cql_sac.train_eval',),
    ('cql_sac.select',),
)


def _modules(package_dir: pathlib.Path) -> Dict[str, pathlib.Path]:
  """{dotted module name: path} of every module of the package at `package_dir`
  ('cql_sac.agents' for its `__init__.py`)."""
  modules = {}
  for path in sorted(package_dir.rglob('*.py')):
    parts = path.relative_to(package_dir.parent).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    modules['.'.join(parts)] = path
  return modules


def _layer(module: str) -> int:
  """Index in LAYERS of the layer holding `module` (the longest matching prefix).

  Raises:
    AssertionError: If no layer holds it.
  """
  best, best_length = None, -1
  for index, prefixes in enumerate(LAYERS):
    for prefix in prefixes:
      if (module == prefix or module.startswith(prefix + '.')) and len(prefix) > best_length:
        best, best_length = index, len(prefix)
  assert best is not None, (f'{module} is in no layer: add it to LAYERS in '
                            'tests/test_layering.py (and to its docstring).')
  return best


def _imports(module: str, path: pathlib.Path, modules: Set[str]) -> List[str]:
  """The cql_sac modules `module` imports, anywhere in its source, each resolved to a module
  (`from cql_sac.x import name` is cql_sac.x.name when that is a module, else cql_sac.x)."""
  package = module if path.name == '__init__.py' else module.rpartition('.')[0]
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      names = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
               for alias in node.names]
    else:
      continue
    for name in names:
      while name and name not in modules:  # `import cql_sac.x.y` of a package's attribute.
        name = name.rpartition('.')[0]
      if name and name.split('.')[0] == 'cql_sac' and name != module:
        found.append(name)
  return sorted(set(found))


def _graph(package_dir: pathlib.Path = PACKAGE_DIR) -> Dict[str, List[str]]:
  """{module: the cql_sac modules it imports} over the package at `package_dir`."""
  modules = _modules(package_dir)
  return {module: _imports(module, path, set(modules)) for module, path in modules.items()}


def _upward_imports(graph: Dict[str, List[str]]) -> List[str]:
  """One line per import of a module from a higher layer than the importer's."""
  return [f'{module} (layer {_layer(module) + 1}) imports {imported} '
          f'(layer {_layer(imported) + 1})'
          for module, imported_modules in graph.items()
          for imported in imported_modules if _layer(imported) > _layer(module)]


def _cycles(graph: Dict[str, List[str]]) -> List[str]:
  """One line 'a -> b -> a' per import cycle a depth-first search meets."""
  state: Dict[str, int] = {}  # 1: on the current path, 2: done.
  cycles = []

  def visit(module, path):
    state[module] = 1
    for imported in graph[module]:
      if state.get(imported) == 1:
        cycles.append(' -> '.join(path[path.index(imported):] + [imported]))
      elif imported not in state:
        visit(imported, path + [imported])
    state[module] = 2

  for module in graph:
    if module not in state:
      visit(module, [module])
  return cycles


def test_every_module_has_a_layer():
  for module in _modules(PACKAGE_DIR):
    _layer(module)


def test_no_module_imports_a_higher_layer():
  upward = _upward_imports(_graph())
  assert not upward, 'Imports against the layer order:\n' + '\n'.join(upward)


def test_no_import_cycle():
  cycles = _cycles(_graph())
  assert not cycles, 'Import cycles:\n' + '\n'.join(cycles)


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
  """A low layer importing the training binary (inside a function), which imports it back."""
  package = tmp_path / 'cql_sac'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'tasks.py').write_text('def f():\n  from cql_sac import train_eval\n')
  (package / 'train_eval.py').write_text('from cql_sac.tasks import f\n')
  graph = _graph(package)
  assert graph['cql_sac.tasks'] == ['cql_sac.train_eval']
  assert graph['cql_sac.train_eval'] == ['cql_sac.tasks']
  assert _upward_imports(graph) == ['cql_sac.tasks (layer 2) imports cql_sac.train_eval '
                                    '(layer 15)']
  assert _cycles(graph) == ['cql_sac.tasks -> cql_sac.train_eval -> cql_sac.tasks']
