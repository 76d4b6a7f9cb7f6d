import numpy as np
import pytest

from fpqvar.eval import build_reference as B
from fpqvar.eval import metrics as M
from fpqvar.eval import reference as R
from fpqvar.eval.evaluate import digit_features, evaluate_images, load_metric_setup, quality_metrics
from fpqvar.eval.inception import InceptionUnavailable, check_available
from tests.eval.conftest import random_digit_net, write_domain_assets


def test_domain_reference_roundtrip_and_metrics(tmp_path):
    cls_path, ref_path = write_domain_assets(tmp_path)
    ref = R.load_domain_reference(ref_path)
    assert ref.features.shape == (40, 128) and ref.sigma.shape == (128, 128)
    assert "not comparable to ImageNet" in ref.label
    net = R.load_digit_net(cls_path)
    imgs = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)  # the reference images
    m = evaluate_images(imgs, np.arange(40) % 10, model="default", classifier=cls_path, reference=ref_path)
    # the reference set against itself: 0 up to sqrtm round-off, which for this rank-deficient covariance
    # (40 samples, 128 features) is ~sqrt(eps) relative to the trace
    assert abs(m["fid"]) < 1e-6 * np.trace(ref.sigma)
    assert (m["precision"], m["recall"]) == (1.0, 1.0)
    assert m["floor_fid"] == 1.5 and m["num_samples"] == 40
    other = np.random.default_rng(1).integers(0, 128, (30, 32, 32, 3), dtype=np.uint8)
    setup = load_metric_setup(model="default", classifier=cls_path, reference=ref_path)
    m2 = quality_metrics(setup, other, None)
    feats, logits = digit_features(net, other)
    assert m2["fid"] == pytest.approx(M.frechet_distance(*M.feature_stats(feats), ref.mu, ref.sigma), rel=1e-12)
    assert m2["class_accuracy"] is None
    # precision / recall as Kynkaanniemi et al. define them (the ADM reading), written here from the definition
    real = ref.features.astype(np.float64)
    d_fr = np.linalg.norm(feats[:, None].astype(np.float64) - real[None], axis=2)  # (fake, real)
    r_real = np.sort(np.linalg.norm(real[:, None] - real[None], axis=2), axis=1)[:, 3]
    f64 = feats.astype(np.float64)
    r_fake = np.sort(np.linalg.norm(f64[:, None] - f64[None], axis=2), axis=1)[:, 3]
    assert m2["precision"] == pytest.approx(float((d_fr <= r_real[None]).any(axis=1).mean()), abs=1e-12)
    assert m2["recall"] == pytest.approx(float((d_fr.T <= r_fake[None]).any(axis=1).mean()), abs=1e-12)


def test_reference_built_with_another_classifier_is_refused(tmp_path):
    cls_path, ref_path = write_domain_assets(tmp_path)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in random_digit_net(5).state_dict().items()}, str(other))
    imgs = np.zeros((8, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="another classifier"):
        evaluate_images(imgs, None, model="default", classifier=other, reference=ref_path)


def test_domain_reference_errors_name_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-reference"):
        R.load_domain_reference(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.zeros(4), sigma=np.eye(4))
    with pytest.raises(ValueError, match=r"bad.npz.*missing key"):
        R.load_domain_reference(bad)
    with pytest.raises(FileNotFoundError, match="classifier"):
        R.load_digit_net(tmp_path / "nope.safetensors")


def test_adm_reference_validation(tmp_path):
    with pytest.raises(FileNotFoundError, match="VIRTUAL_imagenet256_labeled"):
        R.load_adm_reference(tmp_path / "VIRTUAL_imagenet256_labeled.npz")
    p = tmp_path / "ref.npz"
    np.savez(p, mu=np.zeros(8), mu_s=np.zeros(3), sigma_s=np.eye(3))
    with pytest.raises(ValueError, match="'sigma'"):
        R.load_adm_reference(p)
    np.savez(p, mu=np.zeros(8), sigma=np.eye(8), arr_0=np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="arr_0"):
        R.load_adm_reference(p)
    np.savez(p, mu=np.zeros(8), sigma=np.eye(8), mu_s=np.zeros(3), sigma_s=np.eye(3))
    ref = R.load_adm_reference(p)
    assert ref.images is None and ref.mu_s.shape == (3,)


def test_inception_unavailable_says_what_to_install():
    try:
        import torch_fidelity  # noqa: F401
    except Exception:
        with pytest.raises(InceptionUnavailable, match="torch-fidelity.*torchvision"):
            check_available()
    else:  # a machine with torch-fidelity: the weights must still be placed by hand
        with pytest.raises(InceptionUnavailable, match="weights-inception-2015-12-05"):
            check_available("/nonexistent/weights.pth")


def test_imagenet_evaluation_without_reference_is_an_error():
    with pytest.raises(ValueError, match="--reference"):
        evaluate_images(np.zeros((2, 8, 8, 3), np.uint8), None, model="var-d30")


def test_compute_domain_reference_floor(monkeypatch):
    rng = np.random.default_rng(0)
    sets = {"heldout": (rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), np.arange(30) % 10),
            "train": (rng.integers(0, 200, (30, 32, 32, 3), dtype=np.uint8), np.arange(30) % 10)}
    monkeypatch.setattr(B, "split_images_u8", lambda split, per_class=None: sets[split])
    monkeypatch.setattr(B, "FLOOR_SIZES", (20, 30))
    net = random_digit_net(1)
    ref = B.compute_domain_reference(net, "abc")
    fh, _ = digit_features(net, sets["heldout"][0])
    ft, _ = digit_features(net, sets["train"][0])
    np.testing.assert_allclose(ref.mu, fh.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(ref.sigma, np.cov(fh.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-14)
    assert ref.meta["floor"]["fid"] == pytest.approx(M.fid_from_features(ft, fh), rel=1e-9)
    assert ref.meta["classifier_sha256"] == "abc"
    by_n = ref.meta["floor"]["by_n"]
    # the full-size "subset" is the same set in another order: equal up to the round-off of a rank-deficient sqrtm
    assert by_n["30"]["fid"] == pytest.approx(ref.meta["floor"]["fid"], rel=1e-6) and by_n["30"]["draws"] == 1
    assert by_n["20"]["draws"] == B.FLOOR_DRAWS and by_n["20"]["fid"] > 0 and by_n["20"]["fid_std"] >= 0


def test_floor_for_picks_the_nearest_size():
    from fpqvar.eval.evaluate import floor_for

    floor = {"fid": 7.0, "by_n": {"100": {"fid": 30.0, "fid_std": 2.0}, "200": {"fid": 18.0}, "1000": {"fid": 7.0}}}
    assert floor_for(floor, 200) == (200, 18.0, None)
    assert floor_for(floor, 120) == (100, 30.0, 2.0)
    assert floor_for(floor, 5000) == (1000, 7.0, None)
    assert floor_for({"fid": 7.0}, 50) == (None, 7.0, None)
    assert floor_for({}, 50) == (None, None, None)
