# Seeds a stopped Samba AD DC's sam.ldb offline for bench/sync.ts: OU=Bench with N users and G
# global security groups in one transaction (adds over LDAP drop the connection past a few
# thousand). The layout is bench/sync-directory.ts's: user u directly in groups (k - 3u) mod G
# for k < 3; group c >= P sits in group c mod P, P = min(50, G // 10).
#   /usr/bin/python3 bench/sync-samba-seed.py SMB_CONF SAM_LDB USERS GROUPS UPN_SUFFIX
import sys

import ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB

conf, url, n, g_count, suffix = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=url, session_info=system_session(), lp=lp)
ou = "OU=Bench," + str(db.domain_dn())
parents = min(50, g_count // 10)
members = [[] for _ in range(g_count)]
for u in range(n):
    for k in range(min(3, g_count)):
        members[(k - 3 * u) % g_count].append("CN=bu%d,%s" % (u, ou))
if parents > 0:
    for c in range(parents, g_count):
        members[c % parents].append("CN=bg%d,%s" % (c, ou))

db.transaction_start()
try:
    db.add({"dn": ou, "objectClass": "organizationalUnit"})
    for u in range(n):
        db.add({
            "dn": "CN=bu%d,%s" % (u, ou),
            "objectClass": "user",
            "sAMAccountName": "bu%d" % u,
            "userPrincipalName": "bu%d@%s" % (u, suffix),
            "displayName": "User %d" % u,
        })
    for g in range(g_count):
        db.add({"dn": "CN=bg%d,%s" % (g, ou), "objectClass": "group", "sAMAccountName": "bg%d" % g})
    for g in range(g_count):
        if not members[g]:
            continue
        m = ldb.Message()
        m.dn = ldb.Dn(db, "CN=bg%d,%s" % (g, ou))
        m["member"] = ldb.MessageElement(members[g], ldb.FLAG_MOD_ADD, "member")
        db.modify(m)
    db.transaction_commit()
except Exception:
    db.transaction_cancel()
    raise
