# Read Firestore documents with Google's own Python client (google-cloud-firestore), as a user
# of the destination would: every document of the given collections under ROOT, printed as one
# JSON object {"<collection>/<document id>": {fields}}. Timestamps print as ISO 8601 strings.
#
#   FIRESTORE_EMULATOR_HOST=127.0.0.1:8086 python read_firestore.py PROJECT ROOT COLLECTION...
import json
import sys

from google.cloud import firestore


def main():
    project, root, collections = sys.argv[1], sys.argv[2], sys.argv[3:]
    db = firestore.Client(project=project)
    out = {}
    for c in collections:
        path = f"{root}/{c}" if root else c
        for snap in db.collection(path).stream():
            out[f"{c}/{snap.id}"] = snap.to_dict()

    def default(o):
        if hasattr(o, "isoformat"):
            return o.isoformat()
        raise TypeError(f"cannot print a {type(o).__name__}")

    json.dump(out, sys.stdout, default=default)


main()
