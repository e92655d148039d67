"""The Python peer of the import benchmark (run by scripts/bench-import.sh).

Reads the same workbook with pandas.read_excel (openpyxl), normalises every phone number to
E.164 with the `phonenumbers` package (the same cleaning as the Rust importer: a leading
apostrophe, a leading 00, float artefacts of number cells), rejects invalid rows and merges
duplicates (later non-empty values win, tags united). It writes nothing to a database, so it
does less than the Rust side. Prints key=value lines like the Rust benchmark.

    python peer_import.py FILE [REGION]
"""

import math
import resource
import sys
import time

import pandas as pd
import phonenumbers

STANDARD = {
    "phone number": "phone",
    "first name": "first_name",
    "last name": "last_name",
    "email": "email",
    "tags": "tags",
}


def clean_phone(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip().lstrip("'").strip()
    if text.startswith("00") and len(text) > 2:
        text = "+" + text[2:]
    try:
        as_float = float(text)
        if as_float.is_integer() and ("e" in text.lower() or text.endswith(".0")):
            text = str(int(as_float))
    except ValueError:
        pass
    return text or None


def main():
    path = sys.argv[1]
    region = sys.argv[2] if len(sys.argv) > 2 else "US"
    started = time.perf_counter()
    frame = pd.read_excel(path, sheet_name=0, engine="openpyxl")
    read_s = time.perf_counter() - started
    frame.columns = [STANDARD.get(str(c).strip().lower(), str(c).strip().lower()) for c in frame.columns]

    contacts = {}
    rejected = merged = 0
    for row in frame.itertuples(index=False):
        record = row._asdict()
        text = clean_phone(record.pop("phone"))
        try:
            if text is None:
                raise phonenumbers.NumberParseException(0, "missing")
            number = phonenumbers.parse(text, region)
            if not phonenumbers.is_valid_number(number):
                raise phonenumbers.NumberParseException(0, "invalid")
        except phonenumbers.NumberParseException:
            rejected += 1
            continue
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        fields = {k: v for k, v in record.items() if isinstance(v, str) and v.strip()}
        tags = [t.strip() for t in fields.pop("tags", "").split(",") if t.strip()]
        existing = contacts.get(e164)
        if existing is None:
            contacts[e164] = {"fields": fields, "tags": tags}
        else:
            merged += 1
            existing["fields"].update(fields)
            existing["tags"].extend(t for t in tags if t not in existing["tags"])

    total_s = time.perf_counter() - started
    rows = len(frame)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"rows={rows}")
    print(f"imported={len(contacts)}")
    print(f"merged={merged}")
    print(f"rejected={rejected}")
    print(f"read_seconds={read_s:.3f}")
    print(f"import_seconds={total_s:.3f}")
    print(f"rows_per_second={rows / total_s:.0f}")
    print(f"peak_rss_mib={peak_kib / 1024:.1f}")


if __name__ == "__main__":
    main()
