"""docs/numpy.md lists what graphc traces: generated from the registry, kept current here."""
from graphc import supported


def test_docs_numpy_md_is_current():
    with open(supported.DOC_PATH) as f:
        on_disk = f.read()
    assert on_disk == supported.render(), "docs/numpy.md is stale: run python3 -m graphc.supported --write"


def test_the_list_names_functions_users_call():
    text = supported.render()
    for name in ("`np.tanh`", "`np.einsum`", "`np.asarray`", "`np.linalg.inv`", "`x.sum()`", "`@`"):
        assert name in text, name
