#!/usr/bin/env python3
"""Independent Azure SAS generator (stdlib hmac/base64 only), per Microsoft's "Create a service
SAS" / "Create an account SAS" documents (signed version 2022-11-02). Used by the tests to set up
containers and read blobs back without going through the crate's own signing code.

  azsas.py account ACCOUNT KEY_B64 PERMS                -> account SAS query (ss=b, srt=sco)
  azsas.py container ACCOUNT KEY_B64 CONTAINER PERMS    -> service SAS query for a container (sr=c)
  azsas.py blob ACCOUNT KEY_B64 CONTAINER BLOB PERMS     -> service SAS query for one blob (sr=b)
An optional last argument fixes the expiry (`se`, e.g. 2026-01-02T03:04:05Z) for known-answer tests.
"""
import base64, datetime, hmac, hashlib, sys, urllib.parse

SV = "2022-11-02"

def sign(key_b64, s):
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), s.encode("utf-8"), hashlib.sha256).digest()).decode()

FIXED_EXPIRY = None

def expiry():
    if FIXED_EXPIRY:
        return FIXED_EXPIRY
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")

def account_sas(account, key, perms):
    se = expiry()
    # accountname, sp, ss, srt, st, se, sip, spr, sv, ses, "" (trailing newline)
    sts = "\n".join([account, perms, "b", "sco", "", se, "", "", SV, "", ""])
    q = {"sv": SV, "ss": "b", "srt": "sco", "sp": perms, "se": se, "sig": sign(key, sts)}
    return urllib.parse.urlencode(q)

def service_sas(account, key, container, blob, perms):
    se = expiry()
    resource = f"/blob/{account}/{container}" + (f"/{blob}" if blob else "")
    sr = "b" if blob else "c"
    # sp, st, se, canonicalizedResource, si, sip, spr, sv, sr, snapshot, ses, rscc, rscd, rsce, rscl, rsct
    sts = "\n".join([perms, "", se, resource, "", "", "", SV, sr, "", "", "", "", "", "", ""])
    q = {"sv": SV, "sr": sr, "sp": perms, "se": se, "sig": sign(key, sts)}
    return urllib.parse.urlencode(q)

if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    n = {"account": 3, "container": 4, "blob": 5}.get(kind)
    if n is not None and len(args) == n + 1:
        FIXED_EXPIRY = args.pop()
    if kind == "account":
        print(account_sas(*args))
    elif kind == "container":
        print(service_sas(args[0], args[1], args[2], None, args[3]))
    elif kind == "blob":
        print(service_sas(*args))
    else:
        sys.exit("usage: azsas.py account|container …")
