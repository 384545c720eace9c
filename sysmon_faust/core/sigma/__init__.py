"""Sigma, evaluated in the stream: SigmaHQ's rule format, parsed by pySigma, matched here.

pySigma parses a rule and applies its modifiers (``contains``, ``base64offset``,
``windash``, ...) into typed values; it converts rules into *queries* for a
backend, but has no evaluator for one event. That part is ours, because it is
what this project is: matching Sysmon events, with their process's context,
as they stream by.

* :mod:`.logsource` — which Sysmon event ids a rule's logsource means;
* :mod:`.values` — one field tested against one pySigma value;
* :mod:`.conditions` — a parsed condition into one predicate;
* :mod:`.index` — what any match of a rule holds (pieces of text, whole
  values, last parts of paths), and the candidate rules of an event;
* :mod:`.fields` — an event as Sigma sees it: its Sysmon fields, its
  process's creation fields and its ancestry;
* :mod:`.ruleset` — loading files and folders, refusing what cannot be
  evaluated, and matching an event against the rules of its category.

Pure: no I/O but reading rule files.
"""
