"""``interest-graph`` command line: start the stack or one component, replay data, ask for recommendations.

Every subcommand reads :class:`~core.settings.Settings` from the environment; the few
flags below override the settings a user changes most. Heavy imports (torch, faust, grpc) happen
inside the subcommand that needs them, so ``--help`` and ``status`` start fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.settings import Settings, SettingsError
from interest_graph.training import TRAIN_SETTINGS

#: Where `replay` and `demo` look for datasets unless told otherwise (README of shared/datasets).
DEFAULT_DATASETS = Path("../shared/datasets")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for flag, name in (("store_path", "store_path"), ("model_dir", "model_dir"),
                       ("broker", "broker_url"), ("grpc", "grpc_addr")):
        value = getattr(args, flag, None)
        if value:
            overrides[name] = value
    return Settings.from_env(**overrides)


def cmd_up(args: argparse.Namespace) -> int:
    from interest_graph.embedded_broker import BrokerStartError
    from interest_graph.launch import run_embedded_stack

    try:
        return run_embedded_stack(_settings(args), start_broker=not args.external_broker)
    except BrokerStartError as exc:  # a taken port or a missing binary: one line that names the fix
        print(f"interest-graph up: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def cmd_ingest(args: argparse.Namespace) -> int:
    from interest_graph.launch import run_ingest

    return run_ingest(_settings(args))


def cmd_refresh(args: argparse.Namespace) -> int:
    from interest_graph.launch import run_refresh

    return run_refresh(_settings(args))


def cmd_serve(args: argparse.Namespace) -> int:
    from interest_graph.launch import run_serve

    return run_serve(_settings(args))


def cmd_replay(args: argparse.Namespace) -> int:
    from interest_graph.replaying import replay_dataset

    return replay_dataset(_settings(args), source=args.source, data_dir=Path(args.data_dir),
                          rate=args.rate, limit=args.limit, progress=not args.quiet)


def cmd_train(args: argparse.Namespace) -> int:
    from interest_graph.training import train_command

    return train_command(_settings(args), data_dir=args.data_dir, out=args.out, epochs=args.epochs)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from interest_graph.quality import evaluate_command

    settings = _settings(args)
    return evaluate_command(settings, model_dir=Path(args.model or settings.model_dir), data_dir=Path(args.data_dir),
                            k=args.k)


def cmd_export(args: argparse.Namespace) -> int:
    from interest_graph.quality import export_command

    settings = _settings(args)
    return export_command(settings, model_dir=Path(args.model or settings.model_dir), out=Path(args.out),
                          data_dir=Path(args.data_dir) if args.data_dir else None)


def cmd_recommend(args: argparse.Namespace) -> int:
    from interest_graph.console import print_recommendations

    return print_recommendations(_settings(args), args.user_id, k=args.k, exclude_seen=args.exclude_seen,
                                 include=args.category, exclude=args.not_category, diversity=args.diversity)


def cmd_friends(args: argparse.Namespace) -> int:
    from interest_graph.console import print_friends

    return print_friends(_settings(args), args.user_id, k=args.k)


def cmd_explain(args: argparse.Namespace) -> int:
    from interest_graph.console import print_explanation

    return print_explanation(_settings(args), args.user_id, args.item_id, limit=args.limit)


def cmd_watch(args: argparse.Namespace) -> int:
    from interest_graph.console import print_watch

    return print_watch(_settings(args), args.user_id, k=args.k, exclude_seen=args.exclude_seen)


def cmd_similar(args: argparse.Namespace) -> int:
    from interest_graph.console import print_similar

    return print_similar(_settings(args), args.item_id, k=args.k)


def cmd_status(args: argparse.Namespace) -> int:
    from interest_graph.console import print_status

    return print_status(_settings(args), watch=args.watch, interval_s=args.interval)


def cmd_forget(args: argparse.Namespace) -> int:
    from core.domain import InvalidIdError, check_id
    from streams.erasure_publisher import ErasurePublisher, ErasurePublishError

    settings = _settings(args)
    try:
        user_ids = [check_id(u, "user_id", settings.max_id_length) for u in args.user_ids]
    except InvalidIdError as exc:
        print(f"interest-graph forget: {exc}", file=sys.stderr)
        return 2
    publisher = ErasurePublisher(settings.bootstrap_servers, settings.events_topic)
    try:
        receipts = publisher.forget(user_ids)
    except ErasurePublishError as exc:
        print(f"interest-graph forget: {exc} (nothing is lost by trying again)", file=sys.stderr)
        return 1
    finally:
        publisher.close()
    for user_id, receipt in zip(user_ids, receipts, strict=True):
        print(f"{user_id}\t{settings.events_topic}[{receipt.partition}]@{receipt.offset}")
    return 0


def cmd_store_recover(args: argparse.Namespace) -> int:
    from graph_store import GraphStoreError
    from graph_store.ladybug import LadybugStore

    settings = _settings(args)
    if settings.store_backend.strip().lower() != "ladybug":
        print(f"interest-graph store-recover: IG_STORE={settings.store_backend!r}: only the embedded LadybugDB store "
              "has a write-ahead log to recover", file=sys.stderr)
        return 1
    path = settings.store_path
    if not Path(path).exists():
        print(f"interest-graph store-recover: no LadybugDB at {path!r}", file=sys.stderr)
        return 1
    try:
        # Read-write through the store's own opening rules: lenient log replay keeps every committed
        # transaction and drops a torn tail; the checkpoint then leaves nothing in the log to replay.
        with LadybugStore(path) as store:
            store.checkpoint()
            counts = store.counts()
    except GraphStoreError as exc:
        locked = "locked by another process" in str(exc)
        hint = "; stop `interest-graph up` first (it recovers the store itself)" if locked else ""
        print(f"interest-graph store-recover: {' '.join(str(exc).split())}{hint}", file=sys.stderr)  # one line
        return 1
    print(f"recovered {path}: write-ahead log replayed and checkpointed into the database file; "
          f"change-log seq {counts['seq']}, {counts['edges']} edges, {counts['users']} users, {counts['items']} items")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    print(Settings.reference())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from interest_graph.demo import run_demo

    return run_demo(data_dir=Path(args.data_dir), workdir=Path(args.workdir))


#: The flags every subcommand takes unless it names its own subset.
COMMON_FLAGS = ("store_path", "model_dir", "broker", "grpc")


def _add_common(p: argparse.ArgumentParser, flags: Sequence[str] = COMMON_FLAGS) -> None:
    if "store_path" in flags:
        p.add_argument("--store-path", help="LadybugDB path (IG_STORE_PATH)")
    if "model_dir" in flags:
        p.add_argument("--model-dir", help="checkpoint directory (IG_MODEL_DIR)")
    if "broker" in flags:
        p.add_argument("--broker", help="Kafka URL, kafka://host:port (IG_BROKER_URL)")
    if "grpc" in flags:
        p.add_argument("--grpc", help="gRPC address host:port (IG_GRPC_ADDR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interest-graph", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str, *, common: Sequence[str] = COMMON_FLAGS,
            epilog: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=epilog)
        _add_common(p, common)
        p.set_defaults(func=func)
        return p

    p = add("up", cmd_up, "Embedded stack in one process: Tansu broker, Faust ingest, refresh worker, gRPC server.")
    p.add_argument("--external-broker", action="store_true", help="use IG_BROKER_URL instead of starting Tansu")
    add("ingest", cmd_ingest, "Faust ingest worker only (events -> graph store).")
    add("refresh", cmd_refresh, "Refresh worker only (changed k-hop subgraphs -> embeddings).")
    add("serve", cmd_serve, "gRPC server only.")
    p = add("replay", cmd_replay, "Publish a dataset's events to Kafka in time order.")
    p.add_argument("--source", choices=["auto", "movielens", "synthetic"], default="auto",
                   help="auto = movielens-small when present, else the synthetic generator (default: auto)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATASETS), help="datasets folder (default: %(default)s)")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    p.add_argument("--limit", type=int, default=None, help="publish at most this many events")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = add("train", cmd_train, "Fit IG_MODEL_METHOD (SpectralCF by default) and save a checkpoint the refresh "
            "worker picks up.", common=("store_path", "model_dir"), epilog=f"Reads {TRAIN_SETTINGS}.")
    p.add_argument("--data-dir", default=None,
                   help="train.txt/test.txt folder (gowalla format); default: a snapshot of the graph store")
    p.add_argument("--out", default=None, help="model directory (default: --model-dir, IG_MODEL_DIR)")
    p.add_argument("--epochs", type=int, default=None,
                   help="LightGCN training epochs (IG_MODEL_METHOD=lightgcn only; default: 40)")
    p = add("evaluate", cmd_evaluate, "Recall/NDCG@k of a `train --data-dir` model (all-ranking, train masked).",
            common=())
    p.add_argument("--model", default=None, help="model directory written by `train --data-dir ... --out` "
                   "(default: IG_MODEL_DIR)")
    p.add_argument("--data-dir", required=True, help="folder with train.txt and test.txt")
    p.add_argument("-k", type=int, default=20, help="cut-off (default: %(default)s)")
    p = add("export", cmd_export, "Write user_emb/item_emb (float32, dataset id order) of a model to .npz.",
            common=())
    p.add_argument("--model", default=None, help="model directory written by `train --data-dir ... --out` "
                   "(default: IG_MODEL_DIR)")
    p.add_argument("--data-dir", default=None,
                   help="train.txt/test.txt folder of the training graph (default: the one the model was trained on)")
    p.add_argument("--out", required=True, help="output .npz file")
    p = add("recommend", cmd_recommend, "Ask the gRPC server for a user's recommendations.")
    p.add_argument("user_id")
    p.add_argument("-k", type=int, default=10, help="how many items (default: %(default)s)")
    p.add_argument("--exclude-seen", action="store_true", help="leave out items the user interacted with")
    p.add_argument("--category", action="append", default=[], help="only items in this category (repeatable)")
    p.add_argument("--not-category", action="append", default=[], help="leave out this category (repeatable)")
    p.add_argument("--diversity", type=float, default=None,
                   help="MMR lambda in [0, 1]: 1 = pure relevance, lower = more diverse (default: 1)")
    p = add("similar", cmd_similar, "Ask the gRPC server for items similar to an item.")
    p.add_argument("item_id")
    p.add_argument("-k", type=int, default=10, help="how many items (default: %(default)s)")
    p = add("friends", cmd_friends, "Ask the gRPC server for users with interests like a user's.")
    p.add_argument("user_id")
    p.add_argument("-k", type=int, default=10, help="how many users (default: %(default)s)")
    p = add("explain", cmd_explain, "Show the graph evidence behind an item's score for a user.")
    p.add_argument("user_id")
    p.add_argument("item_id")
    p.add_argument("--limit", type=int, default=10, help="items and neighbours to show (default: %(default)s)")
    p = add("watch", cmd_watch, "Print a user's recommendations again whenever a refresh changes them (Ctrl-C ends).")
    p.add_argument("user_id")
    p.add_argument("-k", type=int, default=10, help="how many items (default: %(default)s)")
    p.add_argument("--exclude-seen", action="store_true", help="leave out items the user interacted with")
    p = add("status", cmd_status, "Consumer lag per partition, dead letters, refresh backlog, embedding age.")
    p.add_argument("--watch", action="store_true", help="refresh the table until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default: %(default)s)")
    p = add("forget", cmd_forget, "Erase users everywhere the system keeps them: publishes erasure requests that "
            "the ingest agent applies in order with their events.", common=("broker",))
    p.add_argument("user_ids", nargs="+", metavar="USER_ID", help="user ids as producers name them")
    add("store-recover", cmd_store_recover,
        "Open a LadybugDB store a crash left (lenient log replay), checkpoint it and close: plain opens work again.")
    add("settings", cmd_settings, "Print the settings reference (env var, default, unit, meaning).")
    p = add("demo", cmd_demo, "Start the embedded stack, replay data, train, print recommendations and lag.")
    p.add_argument("--data-dir", default=str(DEFAULT_DATASETS), help="datasets folder (default: %(default)s)")
    p.add_argument("--workdir", default="data/demo", help="where the demo keeps its store (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Where the stack listens is worth seeing without -v, but it is no WARNING: ops read that as trouble.
    for announcer in ("interest_graph.launch", "interest_graph.metrics", "serving.server"):
        logging.getLogger(announcer).setLevel(logging.INFO)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"interest-graph: bad setting: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
