r"""The grammar of rules: Segment's audience query language, the subset of DESIGN.md section 7.

It is a string so that building the parser reads no file. It only shapes the text: which function
names exist, how many arguments each takes and of which type is checked afterwards (parse.py), where
the message can name the function and say what it wants.

Lexical decisions:
- Strings: single or double quotes, as in Segment's examples; a backslash escapes `\\ \' \" \n \t \r`
  and `\uXXXX`; any other escape is an error rather than a guess.
- Numbers: decimal, optional minus sign, fraction and exponent (`3`, `-2`, `99.5`, `1e3`).
- `true`, `false`, `null` and the junctions `AND`, `OR`, `NOT` are words in any letter case.
- Lists: `[` scalars separated by commas `]`, for `one_of` and `contains_one`.
- Durations: a whole number then `day`, `days`, `hour` or `hours`.
"""

GRAMMAR = r"""
start: _expr

_expr: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: NOT not_expr -> negation
         | comparison
?comparison: _operand (CMP_OP _operand)?

_operand: chain | literal | paren
paren: "(" _expr ")"
chain: call ("." call)*
call: NAME "(" [arg ("," arg)*] ")"
?arg: _expr | duration
duration: NUMBER (DAYS | DAY | HOURS | HOUR)

literal: _scalar | list
list: "[" [_scalar ("," _scalar)*] "]"
_scalar: STRING | NUMBER | TRUE | FALSE | NULL

NAME: /[a-z_][a-z0-9_]*/i
STRING: /'(?:[^'\\]|\\[\s\S])*'/ | /"(?:[^"\\]|\\[\s\S])*"/
NUMBER: /-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/
CMP_OP: "==" | "!=" | ">=" | "<=" | "=" | ">" | "<"
_AND: "AND"i
_OR: "OR"i
NOT: "NOT"i
TRUE: "true"i
FALSE: "false"i
NULL: "null"i
DAYS: "days"i
DAY: "day"i
HOURS: "hours"i
HOUR: "hour"i

%ignore /\s+/
"""
