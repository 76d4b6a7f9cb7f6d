import hashlib
import json

from fpqvar.eval import fingerprint as F
from fpqvar.quant.recipes import get_recipe


def test_file_fingerprint(tmp_path, monkeypatch):
    p = tmp_path / "w.bin"
    p.write_bytes(bytes(range(256)) * 40)
    assert F.file_fingerprint(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    monkeypatch.setattr(F, "_FULL_HASH_MAX_BYTES", 1000)
    monkeypatch.setattr(F, "_PARTIAL_BYTES", 100)
    data = p.read_bytes()
    want = hashlib.sha256(str(len(data)).encode() + data[:100] + data[-100:]).hexdigest()
    assert F.file_fingerprint(p) == "partial:" + want


def test_recipe_digest_follows_the_content_not_the_name(tmp_path):
    d = get_recipe("int4-rtn").to_dict()
    a = tmp_path / "mine.json"
    a.write_text(json.dumps(d))
    first = F.recipe_sha256(str(a))
    assert first == hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    d2 = get_recipe("int6-rtn").to_dict()
    d2["name"] = d["name"]
    a.write_text(json.dumps(d2))
    assert F.recipe_sha256(str(a)) != first


def test_every_input_changes_the_record_and_the_diff_names_it():
    base = dict(float_model="w", settings={"top_k": 900}, recipe_sha="r", quantized_sha=None, backend="reference",
                threads=1, device="cpu")
    a = F.run_fingerprint("sample", **base)
    assert a == F.run_fingerprint("sample", **base)
    for field, value, word in (("float_model", "w2", "float weights"), ("recipe_sha", "r2", "recipe content"),
                               ("quantized_sha", "q", "quantized file bytes"), ("threads", 2, "CPU threads"),
                               ("device", "cuda", "device"), ("backend", "exact", "kernels"),
                               ("settings", {"top_k": 20}, "top_k: 900 -> 20")):
        b = F.run_fingerprint("sample", **{**base, field: value})
        assert b["sha"] != a["sha"], field
        assert any(word in d for d in F.fingerprint_diff(a, b)), (field, F.fingerprint_diff(a, b))
