import hashlib
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fpqvar.eval import sample_set as ss
from fpqvar.eval.distributed import DistContext, from_initialized_group, run_sample_set
from tests.eval.conftest import load_tiny

# tiny model: 5 classes, 8x8 images; 3 classes x 5 images in chunks of 2 -> 9 units (last chunk of a class has 1)
CONFIG = ss.SampleSetConfig(classes=(0, 3, 4), per_class=5, chunk_size=2, cfg=1.5, top_k=20, top_p=0.9,
                            base_seed=7, model_id="tiny")


def test_unit_seed_is_the_documented_hash():
    digest = hashlib.sha256(b"fpqvar/sample-set/v1:7:3:1").digest()
    assert ss.unit_seed(7, 3, 1) == int.from_bytes(digest[:8], "little") & (2**63 - 1)
    seeds = [u.seed for u in CONFIG.units()]
    assert len(set(seeds)) == len(seeds)


def test_units_cover_each_class_once():
    units = CONFIG.units()
    assert [u.index for u in units] == list(range(9))
    for c in CONFIG.classes:
        assert [u.n for u in units if u.cls == c] == [2, 2, 1]
    shards = [ss.shard(units, r, 2) for r in range(2)]
    assert sorted(u.index for s in shards for u in s) == list(range(9))
    assert all(u.index % 2 == r for r, s in enumerate(shards) for u in s)


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="per_class"):
        ss.SampleSetConfig(classes=(0,), per_class=0)
    with pytest.raises(ValueError, match="top_p"):
        ss.SampleSetConfig(classes=(0,), top_p=1.5)
    with pytest.raises(ValueError, match="classes"):
        ss.SampleSetConfig(classes=(1, 1))
    assert ss.SampleSetConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_uint8_rounding_is_round_half_up_and_clamped():
    # EXACT: every k/255 and the half-way points just below / above, plus out-of-range values
    k = np.arange(256, dtype=np.float64)
    x = np.concatenate([k / 255, (k + 0.4999) / 255, (k + 0.5001) / 255, [-0.3, 1.2]])
    ref = np.clip(np.floor(x * 255 + 0.5), 0, 255).astype(np.uint8)
    img = torch.tensor(x, dtype=torch.float64).view(1, 1, 1, -1).expand(1, 3, 1, -1)
    got = ss.to_uint8_NHWC(img)
    assert got.shape == (1, 1, x.size, 3)
    np.testing.assert_array_equal(got[0, 0, :, 0], ref)


def _run(tmp, var_paths, ctx, **kw):
    return run_sample_set(lambda: load_tiny(*var_paths), CONFIG, tmp, ctx, progress=False, **kw)


def _worker(rank, world, init_file, out_dir, var_paths):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        _run(out_dir, var_paths, from_initialized_group())
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_same_set_as_one(tmp_path, tiny_paths):
    torch.set_num_threads(1)
    one = _run(tmp_path / "one", tiny_paths, DistContext())
    mp.spawn(_worker, args=(2, str(tmp_path / "pg_init"), str(tmp_path / "two"), tiny_paths), nprocs=2, join=True)
    a0, l0 = ss.load_packed(one)
    a1, l1 = ss.load_packed(tmp_path / "two" / ss.PACKED)
    assert a0.shape == (15, 8, 8, 3) and a0.dtype == np.uint8
    np.testing.assert_array_equal(l0, np.repeat([0, 3, 4], 5))
    np.testing.assert_array_equal(a0, a1)
    np.testing.assert_array_equal(l0, l1)
    assert len({a0[i].tobytes() for i in range(15)}) == 15  # seeds differ per unit and per image


def test_killed_run_resumes_to_the_same_set(tmp_path, tiny_paths):
    ref = _run(tmp_path / "ref", tiny_paths, DistContext())
    out = tmp_path / "resumed"
    assert _run(out, tiny_paths, DistContext(), max_units=4) is None  # "killed" after 4 units
    units_dir = out / ss.UNITS_DIR
    done = sorted(units_dir.glob("*.npz"))
    assert len(done) == 4
    mtimes = {p.name: p.stat().st_mtime_ns for p in done}
    # what a kill leaves behind: a half-written temp file, and (worse, e.g. a copied-over folder) a truncated unit
    (units_dir / ".c00004_k0000.npz.abc.tmp").write_bytes(b"PK\x03\x04half")
    truncated = units_dir / ss.Unit(5, 3, 2, 1, 0).filename
    truncated.write_bytes(done[0].read_bytes()[:100])
    with pytest.raises(FileNotFoundError, match="not sampled yet"):
        ss.pack(CONFIG, out)
    assert _run(out, tiny_paths, DistContext()) is not None
    assert not list(units_dir.glob(".*.tmp"))
    for p in done:  # finished units were kept, not redone
        assert (units_dir / p.name).stat().st_mtime_ns == mtimes[p.name]
    a_ref, l_ref = ss.load_packed(ref)
    a_res, l_res = ss.load_packed(out / ss.PACKED)
    np.testing.assert_array_equal(a_ref, a_res)
    np.testing.assert_array_equal(l_ref, l_res)


def test_folder_with_other_settings_is_refused(tmp_path):
    ss.prepare_dir(tmp_path, CONFIG)
    other = ss.SampleSetConfig.from_dict({**CONFIG.to_dict(), "cfg": 2.0})
    with pytest.raises(ValueError, match="cfg"):
        ss.prepare_dir(tmp_path, other)


def test_read_unit_validates(tmp_path):
    u = ss.Unit(0, 2, 0, 3, 11)
    p = tmp_path / u.filename
    ss._write_unit(p, np.zeros((3, 8, 8, 3), np.uint8), np.arange(15).reshape(3, 5), u)
    images, labels, tokens = ss.read_unit(p, u)
    assert images.shape == (3, 8, 8, 3) and labels.tolist() == [2, 2, 2]
    np.testing.assert_array_equal(tokens, np.arange(15).reshape(3, 5))
    with pytest.raises(ValueError, match="tokens"):
        ss.read_unit(p, u, num_tokens=6)
    with pytest.raises(ValueError, match="seed"):
        ss.read_unit(p, ss.Unit(0, 2, 0, 3, 12))
    with pytest.raises(ValueError, match=r"\(4, H, W, 3\)"):
        ss.read_unit(p, ss.Unit(0, 2, 0, 4, 11))
    p.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):
        ss.read_unit(p, u)


def test_load_packed_names_missing_key(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="arr_0"):
        ss.load_packed(p)
    assert os.path.exists(p)
