"""FedAQT on Flower: a FedAvg-derived strategy, the ClientApp and the ServerApp.

The strategy keeps the float model (a :class:`~wrapkit.fl.server.FedAQTServer`) to itself:
``configure_train`` sends every sampled node the quantized broadcast (int8 codes + float32
scales) and the run's settings; ``aggregate_train`` aggregates the float replies, applies the
gradient relay and the server update, evaluates, and checkpoints the round. Failed replies
(client dropouts, real or injected with ``dropout``) are counted and left out of the
aggregate. The same two apps run on Flower's simulation engine (Ray, :func:`simulate`) and
on its deployment engine (SuperLink + SuperNodes, the module-level ``server_app`` and
``client_app``; docs/fl.md).
"""

import json
import time
from functools import lru_cache

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from .client import ClientUpdate, fedavg_client, fedsgd_client
from .records import broadcast_record, read_broadcast, read_tensors, record_bytes, tensors_record
from .run import FederatedRun
from .settings import FlSettings
from .task import build_model, client_batch, client_batches

__all__ = ["FedAQTStrategy", "client_app", "make_server_app", "server_app"]


class FedAQTStrategy(FedAvg):
    """FedAvg's sampling and reply checks around FedAQT's broadcast and server update.

    Parameters
    ----------
    run : FederatedRun
        The server state, history and checkpoints of the run.
    """

    def __init__(self, run: FederatedRun):
        s = run.settings
        super().__init__(fraction_train=s.per_round / s.task.num_clients, fraction_evaluate=0.0,
                         min_train_nodes=s.per_round, min_available_nodes=s.task.num_clients)
        self.run = run
        self._round_start = 0.0
        self._sent_bytes = 0
        self._sampled = []

    def configure_train(self, server_round, arrays, config, grid):
        """Wait for every node, sample ``per_round`` of them (seeded by run seed and round),
        mark ``round(dropout·K)`` to fail, and send each the quantized broadcast. ``arrays``
        (Flower's copy of the model) is unused: the float model never leaves the server."""
        s = self.run.settings
        r = self.run.completed + 1
        nodes, _ = sample_nodes(grid, self.min_available_nodes, self.min_available_nodes)
        rng = np.random.default_rng([s.task.seed, r])
        # node ids are unsigned 64-bit: sample positions, never the ids through numpy int64
        nodes = sorted(int(n) for n in nodes)
        chosen = [nodes[i] for i in sorted(rng.choice(len(nodes), s.per_round, replace=False))]
        dropped = {chosen[i] for i in rng.choice(len(chosen), round(s.dropout * s.per_round),
                                                 replace=False)}
        record = broadcast_record(self.run.server.broadcast())
        self._sent_bytes = record_bytes(record)
        self._sampled = chosen
        self._round_start = time.time()
        settings = json.dumps(s.to_dict())
        return [Message(RecordDict({self.arrayrecord_key: record, self.configrecord_key:
                                    ConfigRecord({"server-round": r, "settings": settings,
                                                  "fail": node in dropped})}),
                        message_type=MessageType.TRAIN, dst_node_id=node)
                for node in chosen]

    def aggregate_train(self, server_round, replies):
        """Aggregate the valid replies in client order, apply relay and server update
        (:meth:`FederatedRun.finish_round`), count the sampled clients without a reply."""
        valid, _ = self._check_and_log_replies(list(replies), is_train=True)
        updates = []
        for msg in valid:
            m = msg.content["metrics"]
            updates.append((int(m["partition-id"]), ClientUpdate(
                read_tensors(msg.content[self.arrayrecord_key]), int(m["num-examples"]),
                float(m["loss"]))))
        updates.sort(key=lambda u: u[0])   # summation order independent of arrival order
        up_bytes = sum(record_bytes(msg.content[self.arrayrecord_key]) for msg in valid)
        entry = self.run.finish_round(
            [u for _, u in updates], clients=[c for c, _ in updates],
            # a reply that never came (timeout, lost node) is a dropout as much as an error
            sampled=len(self._sampled), failed=len(self._sampled) - len(valid),
            bytes_down=self._sent_bytes, bytes_up=up_bytes,
            seconds=time.time() - self._round_start)
        metrics = {k: v for k, v in entry.items() if isinstance(v, (int, float))}
        return ArrayRecord(), MetricRecord(metrics)


# ---------------------------------------------------------------------------- client side
client_app = ClientApp()


@lru_cache(maxsize=4)
def _template(model_name, seed):
    return build_model(model_name, seed)


@client_app.train()
def client_train(msg: Message, context) -> Message:
    """One client's work in a round: FedSGD gradient or FedAvg delta on quantized weights."""
    torch.set_num_threads(1)
    cfg = msg.content["config"]
    settings = FlSettings.from_dict(json.loads(cfg["settings"]))
    if cfg["fail"]:
        raise RuntimeError("client dropout (injected by --dropout)")
    cid = int(context.node_config.get("partition-id", 0))
    r = int(cfg["server-round"])
    model = _template(settings.task.model, settings.task.seed)
    broadcast = read_broadcast(msg.content["arrays"])
    if settings.algo == "fedsgd":
        x, y = client_batch(settings.task, cid, r, settings.batch_size)
        up = fedsgd_client(model, broadcast, x, y)
    else:
        batches = client_batches(settings.task, cid, r, settings.batch_size,
                                 settings.local_steps)
        up = fedavg_client(model, broadcast, batches, settings.lr, settings.bits)
    content = RecordDict({"arrays": tensors_record(up.tensors),
                          "metrics": MetricRecord({"num-examples": up.num_examples,
                                                   "loss": up.loss, "partition-id": cid})})
    return Message(content, reply_to=msg)


# ---------------------------------------------------------------------------- server side
def _serve(grid, settings, out):
    run = FederatedRun(settings, out)
    remaining = settings.rounds - run.completed
    if remaining > 0:
        FedAQTStrategy(run).start(grid=grid, initial_arrays=ArrayRecord(),
                                  num_rounds=remaining, timeout=settings_timeout(settings))
    return run.finish()


def settings_timeout(settings):
    """Seconds the strategy waits for a round's replies (longer for FedAvg)."""
    return 600.0 if settings.algo == "fedavg" else 300.0


def make_server_app(settings, out, results):
    """A ServerApp running ``settings`` into run folder ``out``; the report (or the exception)
    is appended to ``results``."""
    app = ServerApp()

    @app.main()
    def main(grid, context):
        try:
            results.append(_serve(grid, settings, out))
        except BaseException as exc:   # re-raised by the caller, outside Flower's thread
            results.append(exc)

    return app


server_app = ServerApp()


@server_app.main()
def _deployed_main(grid, context):
    """Deployment engine entry: settings and run folder from the run config
    (``flwr run ... --run-config 'settings="<json>" out="<dir>"'``)."""
    cfg = context.run_config
    _serve(grid, FlSettings.from_dict(json.loads(cfg["settings"])).check(), cfg.get("out") or None)
