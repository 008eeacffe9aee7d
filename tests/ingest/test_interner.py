"""``Interner.intern_many`` gives exactly the codes one ``intern`` per name would, in every case
its bulk path takes (new names all at once, repeats, known names, ids to normalise)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from affinity_sdk.ingest.interner import Interner

# A small alphabet so lists repeat names; "e\u0301" and "\u00e9" are one id in NFC.
_NAMES = st.lists(st.sampled_from(["a", "b", "", "caf\u00e9", "cafe\u0301", "x" * 20, "\u00c5", "A\u030a"]))


@given(known=_NAMES, batch=_NAMES, form=st.sampled_from(["NFC", None]))
def test_intern_many_equals_one_intern_per_name(known: list[str], batch: list[str], form: str | None) -> None:
    bulk, one = Interner(normalize=form), Interner(normalize=form)  # type: ignore[arg-type]
    for names in (bulk, one):
        for name in known:
            names.intern(name)
    codes = bulk.intern_many(batch)
    assert codes.tolist() == [one.intern(name) for name in batch]
    assert bulk.names == one.names
    assert [bulk.lookup(name) for name in batch] == [one.lookup(name) for name in batch]


def test_a_batch_of_new_distinct_names_takes_the_next_codes() -> None:
    names = Interner(["a"])
    assert names.intern_many(["b", "c", "d"]).tolist() == [1, 2, 3]
    assert names.intern_many(["e", "e", "a"]).tolist() == [4, 4, 0]
    assert names.names == ("a", "b", "c", "d", "e")


_IDS = st.sampled_from([f"u{i}" for i in range(12)])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("extend_new"), st.lists(_IDS, max_size=4)),
        st.tuples(st.just("intern"), _IDS),
        st.tuples(st.just("lookup"), _IDS),
        st.tuples(st.just("forget"), _IDS),
        st.tuples(st.just("alias"), _IDS, st.integers(0, 20)),
        st.tuples(st.just("truncate"), st.integers(0, 20)),
        st.tuples(
            st.just("pickle"),
        ),
    ),
    max_size=25,
)


@given(_OPS)
def test_extend_new_then_anything_equals_interning_one_by_one(ops: list[tuple[object, ...]]) -> None:
    # Names appended unchecked are indexed on the next lookup: any mix of calls after them sees
    # what interning them one by one would have given (new names only are passed, as promised).
    import pickle

    lazy, eager = Interner(), Interner()
    for op in ops:
        kind = op[0]
        if kind == "extend_new":
            new = list(dict.fromkeys(n for n in op[1] if eager.lookup(n) is None))  # type: ignore[attr-defined]
            got = lazy.extend_new(new).tolist()
            assert got == [eager.intern(n) for n in new]
        elif kind in ("intern", "lookup", "forget"):
            assert getattr(lazy, str(kind))(op[1]) == getattr(eager, str(kind))(op[1])
        elif kind == "alias":
            code = int(op[2])  # type: ignore[call-overload]
            results: list[str | None] = []
            for names in (lazy, eager):
                try:
                    names.alias(str(op[1]), code)
                    results.append(None)
                except ValueError as exc:
                    results.append(str(exc))
            assert results[0] == results[1]
        elif kind == "truncate":
            n = min(int(op[1]), len(eager))  # type: ignore[call-overload]
            lazy.truncate(n)
            eager.truncate(n)
        else:
            lazy = pickle.loads(pickle.dumps(lazy))
        assert lazy.names == eager.names and lazy.epoch == eager.epoch
    assert [lazy.lookup(f"u{i}") for i in range(12)] == [eager.lookup(f"u{i}") for i in range(12)]


def test_extend_new_with_a_known_name_is_caught_at_the_next_lookup() -> None:
    import pytest

    names = Interner(["a"])
    names.extend_new(["b", "a"])
    with pytest.raises(RuntimeError, match="not new"):
        names.lookup("b")
