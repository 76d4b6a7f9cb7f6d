import pytest
import torch

from fpqvar.model import build_var, build_vqvae
from fpqvar.model.checkpoints import CheckpointError, load_var_weights, load_vqvae_weights, save_state_dict
from fpqvar.model.sampling import sample_tokens
from tests.model.conftest import TINY_VAE, TINY_VAR, make_tiny


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_round_trip_same_outputs(tmp_path, suffix):
    vae, var = make_tiny(seed=1)
    save_state_dict(var, tmp_path / f"var{suffix}")
    save_state_dict(vae, tmp_path / f"vae{suffix}")
    vae2 = load_vqvae_weights(build_vqvae(TINY_VAE), tmp_path / f"vae{suffix}")
    var2 = load_var_weights(build_var(vae2, TINY_VAR), tmp_path / f"var{suffix}").eval()
    a = sample_tokens(var, 2, [1, 2], seed=0, cfg=1.5, top_k=10)
    b = sample_tokens(var2, 2, [1, 2], seed=0, cfg=1.5, top_k=10)
    assert all(torch.equal(x, y) for x, y in zip(a.idx_list, b.idx_list))
    assert torch.equal(a.f_hat, b.f_hat)


def test_official_layout_is_a_plain_dict(tmp_path):
    _, var = make_tiny()
    save_state_dict(var, tmp_path / "v.pth")
    obj = torch.load(tmp_path / "v.pth", weights_only=True)
    assert isinstance(obj, dict) and "blocks.0.attn.mat_qkv.weight" in obj and "lvl_1L" in obj


def test_depth_mismatch_and_missing_keys_are_named(tmp_path):
    vae, var = make_tiny()
    save_state_dict(var, tmp_path / "v.pth")
    deeper = build_var(vae, TINY_VAR.__class__.from_dict({**TINY_VAR.to_dict(), "depth": 3}))
    with pytest.raises(CheckpointError) as e:
        load_var_weights(deeper, tmp_path / "v.pth")
    msg = str(e.value)
    assert "v.pth" in msg and "depth mismatch: file has 2 blocks, model has 3" in msg
    assert "missing keys" in msg and "blocks.2.attn" in msg


def test_shape_mismatch_is_named(tmp_path):
    vae, var = make_tiny()
    sd = var.state_dict()
    sd["head.weight"] = torch.zeros(3, 3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"head.weight: file \(3, 3\) vs model \(64, 128\)"):
        load_var_weights(var, tmp_path / "bad.pth")


def test_garbage_truncated_and_non_state_dict_files(tmp_path):
    _, var = make_tiny()
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable"):
        load_var_weights(var, tmp_path / "junk.pth")
    save_state_dict(var, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pth"):
        load_var_weights(var, tmp_path / "trunc.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list.pth: not a state_dict"):
        load_var_weights(var, tmp_path / "list.pth")
    (tmp_path / "t.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="t.safetensors"):
        load_var_weights(var, tmp_path / "t.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_var_weights(var, tmp_path / "nope.pth")


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('executed')",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    _, var = make_tiny()
    with pytest.raises(CheckpointError):
        load_var_weights(var, tmp_path / "evil.pth")


def test_trainer_wrapped_checkpoint_is_unwrapped(tmp_path):
    _, var = make_tiny()
    torch.save({"trainer": {"var_wo_ddp": var.state_dict()}}, tmp_path / "w.pth")
    load_var_weights(var, tmp_path / "w.pth")


def test_offline_download_message_names_file_and_place(tmp_path, monkeypatch):
    from fpqvar.model import checkpoints as ck

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as e:
        ck.official_checkpoint("var_d16.pth", cache_dir=tmp_path)
    assert "var_d16.pth" in str(e.value) and str(tmp_path.resolve()) in str(e.value)
