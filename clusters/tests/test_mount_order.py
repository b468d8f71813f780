"""The order in which a pod's bind mounts are made (sans-IO)."""

from clusters.local.node.agent import order_mounts


def test_a_mount_covering_another_source_comes_after_it():
    mounts = [("/tmp/c/pod/volumes/tmp", "/tmp"), ("/tmp/c/pod/token", "/var/run/secrets/sa")]
    assert order_mounts(mounts) == (list(reversed(mounts)), [])


def test_parent_mount_points_come_before_children():
    mounts = [("/srv/b", "/data/sub"), ("/srv/a", "/data")]
    assert order_mounts(mounts) == ([("/srv/a", "/data"), ("/srv/b", "/data/sub")], [])


def test_independent_mounts_keep_their_order():
    mounts = [("/srv/a", "/x"), ("/srv/b", "/y"), ("/srv/c", "/z")]
    assert order_mounts(mounts) == (mounts, [])


def test_an_impossible_pair_is_returned_apart():
    # /data must go first (parent of /data/sub), yet it covers /data/src, the other's source.
    mounts = [("/data/src", "/data/sub"), ("/srv/a", "/data")]
    ordered, impossible = order_mounts(mounts)
    assert ordered == []
    assert sorted(impossible) == sorted(mounts)
