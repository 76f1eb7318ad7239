"""``python -m abebeats_lab.emulator``: serve every emulator and print where, as one JSON line.

Used by benchmarks and crash tests that need the emulators in another process. Runs until
stdin closes or the process is signalled, so a parent that dies takes it along.
"""

from __future__ import annotations

import argparse
import json
import sys

from abebeats_lab.emulator import EMULATED_PROVIDERS, Emulators, Scenario


def main() -> None:
    """Serve, announce, then wait for stdin to close."""
    parser = argparse.ArgumentParser(prog="python -m abebeats_lab.emulator")
    parser.add_argument("--providers", nargs="*", default=list(EMULATED_PROVIDERS))
    parser.add_argument("--scenario", default="{}", help="Scenario fields as JSON")
    args = parser.parse_args()
    scenario = Scenario.from_dict(json.loads(args.scenario))
    with Emulators(args.providers, scenario) as emulators:
        urls = {name: emulators.url(name) for name in emulators.servers}
        print(json.dumps({"urls": urls, "env": emulators.env()}), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
