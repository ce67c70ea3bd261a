"""A relying party and an API written with Authlib (Debian's python3-authlib), for the OpenID
interoperability test (test/e2e-apis.test.ts). Each subcommand prints one JSON object. TLS trusts
exactly the CA file given (--ca); nothing is ever left unverified.

  authorize  --issuer I --client-id C --redirect-uri R --scope S [--resource U]
  callback   --issuer I --client-id C --secret X --redirect-uri R --url CALLBACK --state S --verifier V --nonce N
  cc         --issuer I --client-id C --secret X --resource U [--scope S]
  introspect --issuer I --client-id C --secret X --token T
  verify     --issuer I --token T --aud U        (an API's own offline check of a JWT access token)
"""

import argparse
import json
import secrets
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.oidc.core import CodeIDToken

JWT = JsonWebToken(["ES256", "RS256"])


def metadata(args):
    r = requests.get(f"{args.issuer}/.well-known/openid-configuration", verify=args.ca, timeout=10)
    r.raise_for_status()
    return r.json()


def key_set(args, meta):
    r = requests.get(meta["jwks_uri"], verify=args.ca, timeout=10)
    r.raise_for_status()
    return JsonWebKey.import_key_set(r.json())


def session(args, **kw):
    s = OAuth2Session(args.client_id, getattr(args, "secret", None), **kw)
    s.verify = args.ca
    return s


def verify_access_token(args, meta, keys, token, aud):
    """What an API does with a JWT access token (RFC 9068): signature, typ, iss, aud, exp."""
    claims = JWT.decode(
        token,
        keys,
        claims_options={
            "iss": {"essential": True, "value": args.issuer},
            "aud": {"essential": True, "value": aud},
            "exp": {"essential": True},
        },
    )
    claims.validate()
    if claims.header.get("typ") != "at+jwt":
        raise ValueError(f"typ is {claims.header.get('typ')!r}, not at+jwt")
    return {"header": dict(claims.header), "claims": dict(claims)}


def authorize(args):
    meta = metadata(args)
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    s = session(args, scope=args.scope, redirect_uri=args.redirect_uri, code_challenge_method="S256")
    extra = {"resource": args.resource} if args.resource else {}
    url, state = s.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
    )
    return {"url": url, "state": state, "verifier": verifier, "nonce": nonce}


def callback(args):
    meta = metadata(args)
    s = session(args, redirect_uri=args.redirect_uri, state=args.state)
    token = s.fetch_token(
        meta["token_endpoint"],
        authorization_response=args.url,
        code_verifier=args.verifier,
        verify=args.ca,
    )
    keys = key_set(args, meta)
    claims = JWT.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"value": args.issuer}, "aud": {"value": args.client_id}},
        claims_params={"nonce": args.nonce},
    )
    claims.validate()
    out = {
        "id_token": {"header": dict(claims.header), "claims": dict(claims)},
        "token": {k: v for k, v in token.items() if k in ("token_type", "scope", "expires_in")},
    }
    if args.resource:
        out["access_token"] = verify_access_token(args, meta, keys, token["access_token"], args.resource)
    return out


def client_credentials(args):
    meta = metadata(args)
    s = session(args)
    extra = {"scope": args.scope} if args.scope else {}
    token = s.fetch_token(
        meta["token_endpoint"],
        grant_type="client_credentials",
        resource=args.resource,
        verify=args.ca,
        **extra,
    )
    return {"access_token": token["access_token"], "scope": token.get("scope"), "expires_in": token.get("expires_in")}


def introspect(args):
    meta = metadata(args)
    r = session(args).introspect_token(
        meta["introspection_endpoint"], token=args.token, verify=args.ca
    )
    r.raise_for_status()
    return r.json()


def verify(args):
    meta = metadata(args)
    return verify_access_token(args, meta, key_set(args, meta), args.token, args.aud)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["authorize", "callback", "cc", "introspect", "verify"])
    for name in ("issuer", "ca", "client-id", "secret", "redirect-uri", "scope", "resource", "url",
                 "state", "verifier", "nonce", "token", "aud"):
        p.add_argument(f"--{name}")
    args = p.parse_args()
    run = {"authorize": authorize, "callback": callback, "cc": client_credentials,
           "introspect": introspect, "verify": verify}[args.command]
    try:
        print(json.dumps(run(args)))
    except Exception as e:  # the test reads the refusal as data
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        sys.exit(1)


if __name__ == "__main__":
    main()
