"""``twistd -n -y bench/words.tac``: Twisted's own IRC server (``twistd words``) for the benchmarks.

``twistd words --group NAME`` is broken on Python 3 (it calls ``str.decode``),
so this builds the same service as :func:`twisted.words.tap.makeService`
(an :class:`~twisted.words.service.InMemoryWordsRealm`, a portal, the IRC
factory) and creates the room itself.  It reads, from the environment:

``BENCH_WORDS_LISTEN``
    The strports description to listen on (e.g. ``tcp:0:interface=127.0.0.1``;
    the log line ``IRCFactory starting on PORT`` tells the port).
``BENCH_WORDS_ACCOUNTS``
    A file of ``name password`` lines: the accounts (checked on ``PASS`` +
    ``NICK``, like ``twistd words --passwd``).
``BENCH_WORDS_GROUP``
    The room (channel without ``#``) to create; ``bench`` by default.
"""

import os

from twisted.application import service, strports
from twisted.cred import checkers, portal
from twisted.words import service as words

realm = words.InMemoryWordsRealm(os.environ.get("BENCH_WORDS_HOSTNAME", "words.bench"))
checker = checkers.InMemoryUsernamePasswordDatabaseDontUse()
with open(os.environ["BENCH_WORDS_ACCOUNTS"], encoding="utf-8") as accounts:
    for line in accounts:
        fields = line.split()
        if len(fields) == 2:
            checker.addUser(fields[0], fields[1])
words_portal = portal.Portal(realm, [checker])
realm.createGroup(os.environ.get("BENCH_WORDS_GROUP", "bench"))

application = service.Application("words-bench")
factory = words.IRCFactory(realm, words_portal)
strports.service(os.environ["BENCH_WORDS_LISTEN"], factory).setServiceParent(application)
