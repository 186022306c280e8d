"""FedAQT without Flower: partitioners, quantized broadcast, the gradient relay (against
autograd) and the central claim of seed 002 §3.3.3 — with the relay, N FedSGD rounds are N
steps of centralized QAT with trainable scales on the same data order."""

import numpy as np
import pytest
import torch

from wrapkit.fl.central import qat_step
from wrapkit.fl.client import client_arrays, fedavg_client, fedsgd_client
from wrapkit.fl.codes import QuantizedTensor, decode, encode, fake_quant_trainable
from wrapkit.fl.partition import dirichlet_partition, iid_partition
from wrapkit.fl.relay import relay_term
from wrapkit.fl.server import FedAQTServer
from wrapkit.fl.task import build_model, dataset
from wrapkit.models.fake_quant import WeightFakeQuant
from wrapkit.models.qconfig import WeightQuant


def test_iid_partition_is_disjoint_and_equal():
    parts = iid_partition(103, 10, seed=1)
    assert [len(p) for p in parts] == [10] * 10
    flat = np.concatenate(parts)
    assert len(np.unique(flat)) == 100 and flat.max() < 103
    with pytest.raises(ValueError, match="do not fit"):
        iid_partition(10, 4, seed=0, per_client=3)


def test_dirichlet_partition_covers_every_sample_once_and_skews_labels():
    labels = np.repeat(np.arange(10), 100)
    skewed = dirichlet_partition(labels, 20, 0.1, seed=0)
    flat = np.sort(np.concatenate(skewed))
    assert np.array_equal(flat, np.arange(1000))
    assert min(len(p) for p in skewed) >= 1
    broad = dirichlet_partition(labels, 20, 100.0, seed=0)

    def classes(parts):
        return np.mean([len(np.unique(labels[p])) for p in parts])
    assert classes(skewed) < 5 < classes(broad)


@pytest.mark.parametrize("bits,qmax", [("8", 127), ("4", 7), ("binary", 1), ("ternary", 1)])
def test_codes_are_the_centralized_quantizer(bits, qmax):
    w = torch.randn(6, 3, 3, 3)
    qt = encode(w, bits)
    assert qt.codes.dtype == torch.int8 and int(qt.codes.abs().max()) <= qmax
    kind = WeightQuant("uniform", int(bits)) if bits in ("8", "4") else WeightQuant(bits)
    q, s = WeightFakeQuant(kind)(w)
    assert torch.equal(decode(qt), q * s.view(-1, 1, 1, 1))
    # the trainable-scale fake quantizer computes the same forward value
    assert torch.equal(fake_quant_trainable(w, bits), decode(qt))
    with pytest.raises(ValueError, match="bits must be one of"):
        encode(w, "3")


@pytest.mark.parametrize("bits", ["8", "4", "binary", "ternary"])
def test_relay_is_the_scale_path_of_autograd(bits):
    torch.manual_seed(3)
    w = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 7, dtype=torch.float64)
    (fake_quant_trainable(w, bits) * g).sum().backward()
    relay = relay_term(w.detach(), g, bits)
    assert relay.abs().max() > 1e-3          # the scale path is not negligible
    assert torch.allclose(w.grad, g + relay, rtol=0, atol=1e-13)


def _fedsgd_vs_central(relay, bits="4", rounds=6, clients=4, batch=2):
    torch.set_num_threads(1)
    train, _ = dataset("digits")
    x, y = train.x.double(), train.y
    fed, cen = build_model("digits-mlp", seed=0).double(), build_model("digits-mlp", seed=0).double()
    server = FedAQTServer(fed, bits, "fedsgd", lr=0.5, relay=relay)
    opt = torch.optim.SGD(cen.parameters(), lr=0.5)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    for r in range(rounds):
        idx = order[r * clients * batch:(r + 1) * clients * batch]
        sent = server.broadcast()
        updates = [fedsgd_client(fed, sent, x[idx[k * batch:(k + 1) * batch]],
                                 y[idx[k * batch:(k + 1) * batch]]) for k in range(clients)]
        server.update(updates)
        qat_step(cen, bits, opt, x[idx], y[idx])
    return fed, cen


def test_fedsgd_with_relay_equals_centralized_qat():
    fed, cen = _fedsgd_vs_central(relay=True)
    for (name, a), b in zip(fed.named_parameters(), cen.parameters()):
        # float64 agreement: only the order of summation differs (per-client means then the
        # server's weighted mean, vs. one batch mean; relay sum vs. autograd's)
        assert torch.allclose(a, b, rtol=0, atol=1e-12), name
        if a.dim() >= 2:
            assert torch.equal(encode(a, "4").codes, encode(b, "4").codes), name


def test_fedsgd_without_relay_drifts_from_centralized_qat():
    fed, cen = _fedsgd_vs_central(relay=False)
    drift = max(float((a - b).detach().abs().max()) for a, b in zip(fed.parameters(), cen.parameters()))
    assert drift > 1e-4


def test_fedavg_client_only_holds_codes():
    torch.set_num_threads(1)
    train, _ = dataset("digits")
    model = build_model("digits-mlp", seed=0)
    server = FedAQTServer(model, "8", "fedavg", lr=1.0)
    sent = server.broadcast()
    assert isinstance(sent["1.weight"], QuantizedTensor) and not isinstance(sent["1.bias"],
                                                                            QuantizedTensor)
    batches = [(train.x[i:i + 8], train.y[i:i + 8]) for i in range(0, 32, 8)]
    up = fedavg_client(model, sent, batches, lr=0.1, bits="8")
    assert up.num_examples == 32
    final = decode(sent["1.weight"]) + up.tensors["1.weight"]
    # the client's final weights are representable as 8-bit codes times per-channel scales
    assert torch.allclose(decode(encode(final, "8")), final, atol=1e-6)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    server.update([up])
    assert torch.allclose(model.get_parameter("1.weight"), before["1.weight"] + up.tensors["1.weight"])
    assert client_arrays(model, sent)["1.weight"].dtype == torch.float32
