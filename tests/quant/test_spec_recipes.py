"""QuantSpec / LayerRule / Recipe: validation, serialisation, first-match-wins."""

import json

import pytest

from fpqvar.quant.recipes import LayerRule, Recipe, get_recipe, load_recipe, recipe_names
from fpqvar.quant.spec import QuantSpec
from fpqvar.quant.steps import GHT, FullHadamard

# issue 13's list of named recipes
REQUIRED = ["fp16", "int4-rtn", "int6-rtn", "int4-rtn-strict", "int6-rtn-strict", "litevar-w4a4", "litevar-w6a6",
            "fp4-rtn", "fp6-rtn", "fp4-mixed", "fp6-mixed", "smoothquant-w8a8", "smoothquant-w6a6", "quarot-w4a4",
            "fpqvar-dfq", "fpqvar-dfq-ght", "fpqvar-dfq-fullht", "fpqvar-w4a4", "fpqvar-w6a6", "fpqvar-w4a4-kv6",
            "fpqvar-w6a6-kv6"]


def test_all_named_recipes_exist():
    assert set(REQUIRED) <= set(recipe_names())


@pytest.mark.parametrize("bad, field", [
    ({"fmt": "e9m9"}, "fmt"),
    ({"fmt": "e2m1", "granularity": "row"}, "granularity"),
    ({"fmt": "e2m1", "granularity": "group", "group_size": 0}, "group_size"),
    ({"fmt": "e2m1", "granularity": "token", "group_size": 128}, "group_size"),
    ({"fmt": "e2m1", "rounding": "nearest"}, "rounding"),
    ({"fmt": "e2m1", "dfq": "fp8"}, "dfq"),
    ({"fmt": "e2m3", "dfq": "fp4"}, "fmt"),
    ({"fmt": "e2m1", "dfq": "fp4", "static": True}, "static"),
    ({"fmt": "e2m1", "version": 99}, "version"),
])
def test_quantspec_validation_names_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        QuantSpec.from_dict(bad)


def test_quantspec_unknown_key_refused():
    with pytest.raises(ValueError, match="unknown keys"):
        QuantSpec.from_dict({"fmt": "e2m1", "bits": 4})


@pytest.mark.parametrize("name", REQUIRED)
def test_recipe_round_trip(name):
    r = get_recipe(name)
    assert Recipe.from_dict(r.to_dict()) == r
    assert Recipe.from_json(r.to_json()) == r
    assert json.loads(r.to_json())["version"] == 2
    assert r.description and (r.name == "fp16" or r.source), name  # every baseline names where it comes from


def test_recipe_version_check():
    d = get_recipe("fp4-rtn").to_dict()
    d["version"] = 3
    with pytest.raises(ValueError, match="version"):
        Recipe.from_dict(d)
    d["version"] = 2
    d["rules"][0]["weight"]["version"] = 7
    with pytest.raises(ValueError, match="QuantSpec: unsupported version 7"):
        Recipe.from_dict(d)


def test_recipe_unknown_key_and_bad_rule():
    with pytest.raises(ValueError, match="unknown keys"):
        Recipe.from_dict({"name": "x", "ght_size": 128})
    with pytest.raises(ValueError, match="weight.granularity 'token'"):
        LayerRule("blocks.*", QuantSpec("e2m1", "token", None), None)
    with pytest.raises(ValueError, match="two rotations"):
        Recipe("x", (), (GHT(), FullHadamard()))
    with pytest.raises(ValueError, match="unknown kind 'rotate'"):
        Recipe.from_dict({"name": "x", "transforms": [{"kind": "rotate"}]})
    with pytest.raises(ValueError, match="roles"):
        LayerRule("blocks.*", None, None, roles=("fc3",))


@pytest.mark.parametrize("field, value, match", [
    ("ght", "false", "expected true or false"),
    ("format_search", "no", "expected true or false"),
    ("hadamard_seed", 1.5, "expected an integer"),
    ("smoothquant_alpha", "0.5", "expected"),
])
def test_version1_recipe_types_are_strict(field, value, match):
    """Issue 16 item 3: a version-1 file with a string where a bool belongs used to turn GHT on."""
    d = {"name": "old", "version": 1, "rules": [], field: value}
    with pytest.raises(ValueError, match=match):
        Recipe.from_dict(d)


@pytest.mark.parametrize("where, value, match", [
    (("transforms", 0, "block"), "128", "expected an integer"),
    (("transforms", 0, "seed"), 1.5, "expected an integer"),
    (("rules", 0, "weight", "static"), "false", "expected true or false"),
    (("rules", 0, "weight", "group_size"), True, "expected"),
])
def test_version2_recipe_types_are_strict(where, value, match):
    d = get_recipe("fpqvar-dfq-ght").to_dict()
    node = d
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    with pytest.raises(ValueError, match=match):
        Recipe.from_dict(d)


def test_version1_recipe_file_converts():
    """A version-1 recipe (flags; rules reach only the four block linears) loads as the same method."""
    fp4 = QuantSpec("e2m1").to_dict()
    v1 = {"name": "old-ght", "version": 1, "rules": [{"pattern": "blocks.*", "weight": fp4, "act": fp4}],
          "ght": True, "ght_block": 128, "hadamard_seed": 7, "kv": QuantSpec("e2m3", "token", None).to_dict()}
    r = Recipe.from_dict(v1)
    assert r.version == 2 and [t.KIND for t in r.transforms] == ["ght"] and r.transforms[0].seed == 7
    assert r.specs_for("blocks.0.ffn.fc2")[0] == QuantSpec("e2m1")
    assert r.specs_for("blocks.0.ada_lin") == (None, None)  # v1 rules never reached ada_lin
    assert r.kv == QuantSpec("e2m3", "token", None)


def test_first_match_wins():
    i4 = QuantSpec("int4", "channel", None)
    a4 = QuantSpec("int4", "token", None)
    r = Recipe("x", (LayerRule("blocks.*.ffn.fc2", None, None), LayerRule("blocks.1.*", i4, None),
                     LayerRule("blocks.*", i4, a4)))
    assert r.specs_for("blocks.0.ffn.fc2") == (None, None)
    assert r.specs_for("blocks.1.ffn.fc2") == (None, None)  # the fc2 rule comes first
    assert r.specs_for("blocks.1.attn.proj") == (i4, None)
    assert r.specs_for("blocks.0.attn.proj") == (i4, a4)
    assert r.specs_for("head") == (None, None)


def test_fpqvar_uses_dfq():
    w, a = get_recipe("fpqvar-w4a4").specs_for("blocks.0.ffn.fc2")
    assert (w.fmt, w.group_size, a.dfq, a.group_size) == ("e2m1", 128, "fp4", 128)
    w, a = get_recipe("fpqvar-w6a6").specs_for("blocks.0.ffn.fc2")
    assert (w.fmt, w.granularity, a.dfq, a.granularity) == ("e2m3", "channel", "fp6", "token")
    w, a = get_recipe("fp6-rtn").specs_for("blocks.0.attn.proj")
    assert (w.fmt, a.fmt) == ("e2m3", "e3m2")
    assert get_recipe("fpqvar-w4a4-kv6").kv == QuantSpec("e2m3", "token", None)
    assert get_recipe("fpqvar-w4a4").galt is not None and get_recipe("fpqvar-w6a6").galt is None


def test_renamed_recipes_say_what_they_became():
    with pytest.raises(ValueError, match="renamed: use litevar-w4a4"):
        get_recipe("litevar-int4")


def test_load_recipe_from_json_file(tmp_path):
    r = Recipe("mine", (LayerRule("blocks.*.attn.mat_qkv", QuantSpec("e2m1"), QuantSpec("e2m1")),), (GHT(),))
    p = tmp_path / "r.json"
    p.write_text(r.to_json())
    assert load_recipe(str(p)) == r
    p.write_text("{not json")
    with pytest.raises(ValueError, match="r.json: not valid JSON"):
        load_recipe(str(p))
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        load_recipe("nope")


# ------------------------------------------------ killed mutants (tools/mutation.py on spec.py, operands.py)
def test_spec_takes_a_format_object_and_validates_fixed_scale():
    from fpqvar.formats import get_format

    s = QuantSpec(get_format("e2m1"))
    assert s.fmt == "e2m1" and isinstance(s.fmt, str)
    assert QuantSpec("uint8", "tensor", None, fixed_scale=1 / 256).fixed_scale == 1 / 256
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="fixed_scale must be a finite number > 0"):
            QuantSpec("uint8", "tensor", None, fixed_scale=bad)
    for kw in ({"granularity": "token", "group_size": None}, {"granularity": "tensor", "group_size": None,
                                                              "static": True}):
        with pytest.raises(ValueError, match="fixed_scale needs granularity 'tensor', static=False"):
            QuantSpec("int8", fixed_scale=0.5, **kw)
    with pytest.raises(ValueError, match="group_size must be a positive int"):
        QuantSpec("e2m1", "group", 0)
    assert QuantSpec("e2m1", "group", 1).group_size == 1
    with pytest.raises(ValueError, match="static=True is not supported with dfq"):
        QuantSpec("e2m1", dfq="fp4", static=True)


def test_install_operand_quantizers_counts_and_sets_the_kv_cache():
    from fpqvar.quant.operands import install_operand_quantizers, operand_specs
    from tests.quant.conftest import make_small

    _, var = make_small()
    kv = QuantSpec("e2m3", "token", None)
    specs = {"blocks.0.attn.kv": kv, "blocks.1.attn.q": QuantSpec("uint8", "token", None)}
    assert install_operand_quantizers(var, specs) == 2
    assert var.blocks[0].attn.kv_quantizer.spec == kv and var.blocks[1].attn.kv_quantizer is None
    assert set(operand_specs(var)) == set(specs)
