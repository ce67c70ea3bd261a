# Seeds a stopped Samba AD DC's sam.ldb offline for bench/sync.ts: OU=Bench with N users and G
# global security groups (adds over LDAP drop the connection past a few thousand). The layout is bench/sync-directory.ts's: user u directly in groups (k - 3u) mod G
# for k < 3; group c >= P sits in group c mod P, P = min(50, G // 10).
#   /usr/bin/python3 bench/sync-samba-seed.py SMB_CONF SAM_LDB USERS GROUPS UPN_SUFFIX
#
# Every add copies the index lists it touches (objectClass=user, the OU's one-level list: all N
# users) into a sub-transaction and merges them back, so one transaction of N adds was quadratic
# (10,000 users: 87 s, 80 of them in the user adds). batch_mode skips those sub-transactions; a
# failed add then spoils the transaction, which is cancelled anyway. Committing every few thousand
# adds keeps the transaction's index cache from growing with N.
import sys

import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

conf, url, n, g_count, suffix = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=url, session_info=system_session(), lp=lp, options=["batch_mode:1"])
ou = "OU=Bench," + str(db.domain_dn())
parents = min(50, g_count // 10)
members = [[] for _ in range(g_count)]
for u in range(n):
    for k in range(min(3, g_count)):
        members[(k - 3 * u) % g_count].append("CN=bu%d,%s" % (u, ou))
if parents > 0:
    for c in range(parents, g_count):
        members[c % parents].append("CN=bg%d,%s" % (c, ou))


def add_user(u):
    db.add({
        "dn": "CN=bu%d,%s" % (u, ou),
        "objectClass": "user",
        "sAMAccountName": "bu%d" % u,
        "userPrincipalName": "bu%d@%s" % (u, suffix),
        "displayName": "User %d" % u,
    })


def add_group(g):
    db.add({"dn": "CN=bg%d,%s" % (g, ou), "objectClass": "group", "sAMAccountName": "bg%d" % g})


def add_members(g):
    m = ldb.Message()
    m.dn = ldb.Dn(db, "CN=bg%d,%s" % (g, ou))
    m["member"] = ldb.MessageElement(members[g], ldb.FLAG_MOD_ADD, "member")
    db.modify(m)


# The same writes in the same order as one transaction did, committed every BATCH of them.
writes = [lambda: db.add({"dn": ou, "objectClass": "organizationalUnit"})]
writes += [lambda u=u: add_user(u) for u in range(n)]
writes += [lambda g=g: add_group(g) for g in range(g_count)]
writes += [lambda g=g: add_members(g) for g in range(g_count) if members[g]]
BATCH = 5000
for i in range(0, len(writes), BATCH):
    db.transaction_start()
    try:
        for w in writes[i:i + BATCH]:
            w()
        db.transaction_commit()
    except Exception:
        db.transaction_cancel()
        raise
