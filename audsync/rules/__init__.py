"""Rule audiences and computed traits: Segment's audience query language (DESIGN.md section 7).

`parse_rule(text, kind, where=...)` turns a rule into a typed tree (audsync.rules.tree) or raises
RuleError, a ConfigError whose message points at the column of the mistake. The compiler to SQL reads
the tree; nothing here touches a database or a file.
"""

from audsync.rules.parse import KINDS, RuleError, parse_rule
from audsync.rules.tree import ValueType, to_text

__all__ = ["KINDS", "RuleError", "ValueType", "parse_rule", "to_text"]
