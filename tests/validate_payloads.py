#!/usr/bin/env python3
"""Validates every *.json payload in a folder against SendGrid's mail/send JSON Schema.

usage: validate_payloads.py SCHEMA DIR MIN_COUNT
Fails when any payload is invalid, or when fewer than MIN_COUNT payloads were found (so that a
run that produced no payloads cannot pass).
"""
import json
import pathlib
import sys

import jsonschema


def main() -> int:
    schema_path, folder, min_count = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
    schema = json.loads(pathlib.Path(schema_path).read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    payloads = sorted(folder.glob("*.json"))
    failures = 0
    for path in payloads:
        errors = list(validator.iter_errors(json.loads(path.read_text())))
        for error in errors:
            location = "/".join(str(part) for part in error.absolute_path)
            print(f"{path.name}: {location}: {error.message[:300]}")
        failures += bool(errors)
    print(f"{len(payloads) - failures} passed, {failures} failed")
    if len(payloads) < min_count:
        print(f"only {len(payloads)} payloads found, expected at least {min_count}")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
