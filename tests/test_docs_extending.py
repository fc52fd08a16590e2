"""The worked examples in docs/extending.md run as written: a new predictor and a new search algorithm."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"


def _block(heading: str) -> str:
    text = DOC.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_predictor_example_trains_saves_loads_and_compiles(tmp_path):
    code = _block("## Adding a predictor") + textwrap.dedent(f"""
        from latnas.schema.spaces import get_space
        from predictors.persistence import load_predictor, save_predictor
        from predictors.compile import compile_predictor
        from predictors.train import make_arch_model

        space = get_space("nb201")
        archs = np.array(space.random_archs(30, rng=0))
        y = 1.0 + archs.sum(axis=1).astype(float)
        est = make_arch_model("mean", "nb201", scale=2.0).fit(archs, y)
        save_predictor(est, r"{tmp_path / 'm'}")
        back, meta = load_predictor(r"{tmp_path / 'm'}", space="nb201")
        table = compile_predictor(back)
        np.testing.assert_allclose(table.predict(archs), est.predict(archs), rtol=1e-9)
        assert abs(back.predict(archs[:1])[0] - 2.0 * y.mean()) < 1e-9
        print("ok", type(back).__name__)
    """)
    assert "ok MeanPredictor" in _run(code)


def test_search_algorithm_example_runs_under_a_budget():
    code = _block("## Adding a search algorithm") + textwrap.dedent("""
        from latnas.schema.latency_table import flops_table
        from latnas.search import ALGORITHMS, Budget, SearchProblem, Termination, minimize
        from latnas.search.scorers import ScorerConfig, make_scorer
        from latnas.schema.spaces import get_space

        space = get_space("nb201")
        table = flops_table(space)
        budget = Budget(float(np.median(table.predict(np.array(space.random_archs(200, rng=1))))), "MFLOPs")
        problem = SearchProblem(space, table, make_scorer("params", ScorerConfig(space=space)), budget=budget)
        result = minimize(problem, ALGORITHMS.get("my_algo")({"batch_size": "4"}, seed=0), Termination(20))
        assert 1 <= result.evals <= 20 and result.archs
        assert all(table.predict(np.array(result.archs)) <= budget.value + 1e-9)
        print("ok", result.evals)
    """)
    assert _run(code).startswith("ok")
