"""Deliberately broken variants of the reference implementation, for the self-test.

They live with the project's tests, never in the shipped implementation: each is the
real component with one behaviour patched at start-up, registered as an image only
when ``AMBIENT_HARNESS_IMAGE_PLUGINS=conformance.tests.broken:register`` is set.  The
self-test (test_suite_strength.py) installs the reference implementation with one of
them swapped in and asserts that the conformance suite fails it.
"""

from __future__ import annotations

from typing import Any

IMAGE_PREFIX = "ambient-harness-selftest"
VARIANTS = {
    "ztunnel-ignores-deny": ("ztunnel", "conformance.tests.broken.ztunnel_ignores_deny"),
    "ztunnel-enrols-nothing": ("ztunnel", "conformance.tests.broken.ztunnel_enrols_nothing"),
    "ztunnel-bypassed": ("ztunnel", "conformance.tests.broken.ztunnel_bypassed"),
    "ztunnel-falls-through": ("ztunnel", "conformance.tests.broken.ztunnel_falls_through"),
    "ztunnel-exact-as-prefix": ("ztunnel", "conformance.tests.broken.ztunnel_exact_as_prefix"),
    "ztunnel-ignores-selectors": ("ztunnel", "conformance.tests.broken.ztunnel_ignores_selectors"),
    "ztunnel-keeps-open-connections": (
        "ztunnel", "conformance.tests.broken.ztunnel_keeps_open_connections"),
    "ztunnel-takes-plaintext-hbone": (
        "ztunnel", "conformance.tests.broken.ztunnel_takes_plaintext_hbone"),
    "ztunnel-forgets-policies-offline": (
        "ztunnel", "conformance.tests.broken.ztunnel_forgets_policies_offline"),
    "ztunnel-uncaptures-on-exit": (
        "ztunnel", "conformance.tests.broken.ztunnel_uncaptures_on_exit"),
    "ztunnel-tunnels-anywhere": (
        "ztunnel", "conformance.tests.broken.ztunnel_tunnels_anywhere"),
    "waypoint-swaps-weights": ("waypoint", "conformance.tests.broken.waypoint_swaps_weights"),
    "waypoint-allows-all": ("waypoint", "conformance.tests.broken.waypoint_allows_all"),
}


def image(variant: str) -> str:
    return f"{IMAGE_PREFIX}/{variant}:0"


def register(catalog: Any) -> None:
    for variant, (component, module) in VARIANTS.items():
        listens = (15021,) if component == "waypoint" else ()
        catalog.register_module(rf"(^|/){IMAGE_PREFIX}/{variant}(:\w+)?$", module,
                                listens=listens,
                                description=f"{image(variant)} (self-test: broken {component})")
