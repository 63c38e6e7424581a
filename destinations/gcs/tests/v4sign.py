#!/usr/bin/env python3
"""Independent V4 signed URL (GOOG4-RSA-SHA256), following the Python sample in Google's
"V4 signing process with your own program" document, with the RSA-SHA256 signature made by the
openssl CLI (no third-party Python packages needed).

  v4sign.py KEY_PEM EMAIL ORIGIN BUCKET OBJECT YYYYmmddTHHMMSSZ EXPIRES_SECONDS  -> the URL
"""
import binascii, hashlib, subprocess, sys
from urllib.parse import quote

key_pem, email, origin, bucket, object_name, request_timestamp, expiration = sys.argv[1:8]
scheme, host = origin.split("://", 1)
host = host.rstrip("/")
datestamp = request_timestamp[:8]

escaped_object_name = quote(object_name.encode("utf-8"), safe=b"/~")
canonical_uri = f"/{bucket}/{escaped_object_name}"

credential_scope = f"{datestamp}/auto/storage/goog4_request"
credential = f"{email}/{credential_scope}"

canonical_headers = f"host:{host}\n"
signed_headers = "host"

query_parameters = {
    "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
    "X-Goog-Credential": credential,
    "X-Goog-Date": request_timestamp,
    "X-Goog-Expires": expiration,
    "X-Goog-SignedHeaders": signed_headers,
}
canonical_query_string = "&".join(
    f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in sorted(query_parameters.items())
)

canonical_request = "\n".join(
    ["GET", canonical_uri, canonical_query_string, canonical_headers, signed_headers, "UNSIGNED-PAYLOAD"]
)
canonical_request_hash = hashlib.sha256(canonical_request.encode()).hexdigest()
string_to_sign = "\n".join(["GOOG4-RSA-SHA256", request_timestamp, credential_scope, canonical_request_hash])

signature = subprocess.run(
    ["openssl", "dgst", "-sha256", "-sign", key_pem],
    input=string_to_sign.encode(), capture_output=True, check=True,
).stdout
signature = binascii.hexlify(signature).decode()

print(f"{scheme}://{host}{canonical_uri}?{canonical_query_string}&x-goog-signature={signature}")
