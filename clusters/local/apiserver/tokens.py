"""Service-account tokens: minted for TokenRequest, checked for TokenReview.

Tokens are JWTs signed by a key the server creates at start, with the claims real
Kubernetes puts in bound tokens (``kubernetes.io`` with the service account and,
when bound, the pod), so a workload proves who it is the same way it would on a
real cluster.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://kubernetes.default.svc.cluster.local"
# The audiences of the API server itself (a real server's --api-audiences defaults to
# its issuer): a token is accepted on API requests, and by a TokenReview that names no
# audiences, only if made for one of these.
API_AUDIENCES = (ISSUER,)


@dataclass
class TokenUser:
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]] = field(default_factory=dict)
    audiences: list[str] = field(default_factory=list)


class TokenIssuer:
    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._public = self._key.public_key()

    def mint(self, namespace: str, sa_name: str, sa_uid: str, *, audiences: list[str],
             expiration_seconds: int, pod: dict[str, Any] | None = None,
             node: dict[str, Any] | None = None) -> tuple[str, int]:
        issued = int(time.time())
        exp = issued + expiration_seconds
        k8s: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": sa_name, "uid": sa_uid},
        }
        if pod is not None:
            k8s["pod"] = {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
            if node is not None:
                # ServiceAccountTokenPodNodeInfo: a pod-bound token names its node too.
                k8s["node"] = {"name": node["metadata"]["name"],
                               "uid": node["metadata"]["uid"]}
        claims = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{sa_name}",
            "aud": audiences,
            "iat": issued,
            "nbf": issued,
            "exp": exp,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
        }
        return jwt.encode(claims, self._key, algorithm="ES256"), exp

    def claims(self, token: str) -> dict[str, Any] | None:
        """Verified claims, or None for a token this server did not sign or that expired."""
        return self.verify(token)[0]

    def verify(self, token: str) -> tuple[dict[str, Any] | None, str]:
        """(claims, "") for a token this server signed that is still valid, else (None,
        why): "" for a token that is not ours at all (the real JWT authenticator does not
        recognise it either), or the real validator's reason (``pkg/serviceaccount/
        claims.go``)."""
        try:
            return jwt.decode(
                token, self._public, algorithms=["ES256"], issuer=ISSUER,
                options={"verify_aud": False, "require": ["exp", "sub", "iss"]},
            ), ""
        except jwt.ExpiredSignatureError:
            return None, "service account token has expired"
        except jwt.ImmatureSignatureError:
            return None, "service account token is not valid yet"
        except jwt.PyJWTError:
            return None, ""
