"""``python -m services.auth``: API keys and the audit log, for admins (on the machine holding the keys store).

    python -m services.auth keys create --name alice --role user     # prints the key: shown this once
    python -m services.auth keys list
    python -m services.auth keys revoke KEY_ID
    python -m services.auth audit --limit 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from services.auth.policy import ROLES, Principal
from services.auth.store import DEFAULT_URL, KeyStore
from services.common.errors import DomainError

ENV_NAMES = ("GATEWAY_AUTH_DATABASE_URL", "TRAINER_AUTH_DATABASE_URL", "EXPORTER_AUTH_DATABASE_URL")
CLI = Principal("cli", "admin")


def default_url() -> str:
    return next((os.environ[n] for n in ENV_NAMES if os.environ.get(n)), DEFAULT_URL)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m services.auth", description="API keys and the audit log.")
    p.add_argument("--database-url", default=None,
                   help=f"the keys store (default: $GATEWAY_AUTH_DATABASE_URL, $TRAINER_..., $EXPORTER_..., or "
                        f"{DEFAULT_URL})")
    p.add_argument("--json", action="store_true", help="print JSON")
    sub = p.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keys", help="create, list or revoke API keys")
    ks = keys.add_subparsers(dest="action", required=True)
    create = ks.add_parser("create", help="a new key (printed once)")
    create.add_argument("--name", required=True, help="a person's or a service account's name")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--service", action="store_true", help="a service account's key")
    ks.add_parser("list", help="every key (never their secrets)")
    revoke = ks.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    audit = sub.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--limit", type=int, default=50)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    url = args.database_url or default_url()
    store = KeyStore(url, create=args.command == "keys" and args.action == "create")
    try:
        if args.command == "keys" and args.action == "create":
            info, key = store.create(args.name, args.role, "service" if args.service else "user", CLI.name)
            store.audit(CLI, "key.create", info.id, f"{info.name} ({info.role})")
            if args.json:
                print(json.dumps({**info.to_dict(), "key": key}))
            else:
                print(f"created key {info.id} for {info.name} ({info.role}). The key, shown this once:")
                print(key)
        elif args.command == "keys" and args.action == "list":
            keys = store.list()
            if args.json:
                print(json.dumps([k.to_dict() for k in keys]))
            else:
                print(f"{'ID':<14}{'NAME':<24}{'ROLE':<8}{'KIND':<9}{'CREATED':<22}STATUS")
                for k in keys:
                    status = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
                    print(f"{k.id:<14}{k.name[:23]:<24}{k.role:<8}{k.kind:<9}{k.created_at:%Y-%m-%d %H:%M:%S}   "
                          f"{status}")
        elif args.command == "keys" and args.action == "revoke":
            info = store.revoke(args.key_id)
            store.audit(CLI, "key.revoke", info.id, f"{info.name} ({info.role})")
            print(json.dumps(info.to_dict()) if args.json else f"revoked key {info.id} ({info.name})")
        else:
            entries, total = store.audit_log(args.limit)
            if args.json:
                print(json.dumps({"entries": [e.to_dict() for e in entries], "total": total}))
            else:
                for e in entries:
                    print(f"{e.time:%Y-%m-%d %H:%M:%S}  {e.actor} ({e.role})  {e.action}  {e.target}  {e.detail}"
                          .rstrip())
                print(f"{len(entries)} of {total} entries")
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
