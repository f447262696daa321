//! The integer expression language of sweep files: `derived` values, `constraints` and `when`.
//!
//! ```text
//! expr   := or
//! or     := and ("||" and)*            (short-circuit)
//! and    := eq ("&&" eq)*              (short-circuit)
//! eq     := rel (("==" | "!=") rel)*
//! rel    := sum (("<" | "<=" | ">" | ">=") sum)*
//! sum    := prod (("+" | "-") prod)*
//! prod   := unary (("*" | "/" | "%") unary)*
//! unary  := ("-" | "!")* atom
//! atom   := integer | true | false | name | func "(" expr ("," expr)* ")" | "(" expr ")"
//! func   := ceil_div | min | max
//! ```
//!
//! Values are 64-bit signed integers and booleans, checked when the expression is compiled
//! (`BM + (N > 4)` is an error there, not at the millionth candidate). Every operation is
//! checked: overflow, division by zero and `i64::MIN / -1` are errors, never a wrap or a panic.
//! `/` and `%` truncate toward zero like C++; `ceil_div(a, b)` is the exact ceiling of a/b.
//!
//! Why not the evalexpr crate, which the project used before: its tree builder inserts each
//! token by recursing down the right spine of the tree built so far, so the time grows with
//! the product of length and depth (100,000 unary minus signs ran for minutes, ~n³) and deep
//! input overflows the stack (50,000 nested parentheses aborted the process); evaluation and
//! dropping the tree recurse too. It also brings floats, strings, `^`, assignments and
//! sequences that a sweep file must not use. Bounding all of that from outside would mean
//! tokenizing every expression a second time with a lexer that has to agree with the crate's,
//! so this module parses the small language the sweep files use itself: one pass with
//! precedence climbing, recursion only for nesting (limited to [`MAX_DEPTH`]), and compiles to
//! a flat postfix program whose evaluation is one loop with forward jumps only. Compiling and
//! evaluating are linear in the expression's size and never recurse deeper than the limit.

use std::fmt;

/// The longest expression accepted, bytes. The longest in the project's sweep files is ~200.
pub const MAX_LEN: usize = 4096;
/// How deeply parentheses and function calls may nest.
pub const MAX_DEPTH: usize = 64;

/// The type of an expression, known when it is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Int,
    Bool,
}

impl Type {
    fn noun(self) -> &'static str {
        match self {
            Type::Int => "a number",
            Type::Bool => "a condition (true/false)",
        }
    }
}

/// A compile error: what is wrong and the byte offset in the expression where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    pub offset: usize,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at column {})", self.message, self.offset + 1)
    }
}

impl std::error::Error for CompileError {}

/// An evaluation error (overflow, division by zero), naming the failing sub-expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    CeilDiv,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Const(i64),
    Var(u32),
    Neg,
    Not,
    Bin(Bin),
    /// `&&`: if the top is false, jump (leaving false); else pop it and go on.
    AndJump(u32),
    /// `||`: if the top is true, jump (leaving true); else pop it and go on.
    OrJump(u32),
}

/// A compiled expression: a postfix program over variable slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    text: String,
    ops: Vec<Op>,
    /// For each op, the byte range of the sub-expression it computes (for error messages).
    spans: Vec<(u32, u32)>,
    max_stack: usize,
    ty: Type,
    vars: Vec<u32>,
}

impl Program {
    pub fn ty(&self) -> Type {
        self.ty
    }

    /// The slots the expression reads, each once, in order of first use.
    pub fn variables(&self) -> &[u32] {
        &self.vars
    }

    /// Evaluates with `slots[i]` as the value of the name compiled to slot `i`. Booleans come
    /// back as 0 or 1. Time is linear in the program's length (jumps only go forward).
    pub fn eval(&self, slots: &[i64]) -> Result<i64, EvalError> {
        let mut stack: Vec<i64> = Vec::with_capacity(self.max_stack);
        let mut pc = 0;
        while pc < self.ops.len() {
            match self.ops[pc] {
                Op::Const(v) => stack.push(v),
                Op::Var(s) => stack.push(*slots.get(s as usize).ok_or_else(|| self.err(pc, "has no value"))?),
                Op::Neg => {
                    let a = stack.pop().unwrap_or(0);
                    stack.push(a.checked_neg().ok_or_else(|| self.overflow(pc, &[a]))?);
                }
                Op::Not => {
                    let a = stack.pop().unwrap_or(0);
                    stack.push((a == 0) as i64);
                }
                Op::Bin(b) => {
                    let y = stack.pop().unwrap_or(0);
                    let x = stack.pop().unwrap_or(0);
                    stack.push(self.binary(pc, b, x, y)?);
                }
                Op::AndJump(to) | Op::OrJump(to) => {
                    let top = *stack.last().unwrap_or(&0);
                    let jump_on = matches!(self.ops[pc], Op::OrJump(_)) as i64;
                    if top == jump_on {
                        pc = to as usize;
                        continue;
                    }
                    stack.pop();
                }
            }
            pc += 1;
        }
        Ok(stack.pop().unwrap_or(0))
    }

    fn binary(&self, pc: usize, b: Bin, x: i64, y: i64) -> Result<i64, EvalError> {
        let checked = match b {
            Bin::Add => x.checked_add(y),
            Bin::Sub => x.checked_sub(y),
            Bin::Mul => x.checked_mul(y),
            Bin::Div | Bin::Rem | Bin::CeilDiv if y == 0 => return Err(self.err(pc, "divides by zero")),
            Bin::Div => x.checked_div(y),
            Bin::Rem => x.checked_rem(y),
            Bin::CeilDiv => ceil_div(x, y),
            Bin::Min => Some(x.min(y)),
            Bin::Max => Some(x.max(y)),
            Bin::Eq => Some((x == y) as i64),
            Bin::Ne => Some((x != y) as i64),
            Bin::Lt => Some((x < y) as i64),
            Bin::Le => Some((x <= y) as i64),
            Bin::Gt => Some((x > y) as i64),
            Bin::Ge => Some((x >= y) as i64),
        };
        checked.ok_or_else(|| self.overflow(pc, &[x, y]))
    }

    fn snippet(&self, pc: usize) -> &str {
        let (a, b) = self.spans[pc];
        self.text.get(a as usize..b as usize).unwrap_or(&self.text)
    }

    fn err(&self, pc: usize, what: &str) -> EvalError {
        EvalError(format!("`{}` {what}", self.snippet(pc)))
    }

    fn overflow(&self, pc: usize, operands: &[i64]) -> EvalError {
        let ops: Vec<String> = operands.iter().map(|v| v.to_string()).collect();
        EvalError(format!(
            "`{}` overflows a 64-bit integer (operands {}): use smaller values or a tighter constraint first",
            self.snippet(pc),
            ops.join(", ")
        ))
    }
}

/// The exact ceiling of x / y (y != 0), or None when it does not fit in i64.
fn ceil_div(x: i64, y: i64) -> Option<i64> {
    let (x, y) = (x as i128, y as i128);
    let (q, r) = (x / y, x % y);
    let q = if r != 0 && ((r > 0) == (y > 0)) { q + 1 } else { q };
    i64::try_from(q).ok()
}

/// Compiles `text`; `names[i]` is the variable in slot `i`.
pub fn compile(text: &str, names: &[&str]) -> Result<Program, CompileError> {
    if text.len() > MAX_LEN {
        return Err(CompileError {
            message: format!(
                "expression is {} bytes long; the limit is {MAX_LEN}: split it into derived values",
                text.len()
            ),
            offset: 0,
        });
    }
    let tokens = lex(text)?;
    let mut p =
        Parser { text, tokens, pos: 0, names, ops: Vec::new(), spans: Vec::new(), depth: 0, stack: 0, max_stack: 0 };
    let ty = p.expr()?;
    if let Some(t) = p.tokens.get(p.pos) {
        return Err(CompileError {
            message: format!("unexpected `{}` after the expression", t.text(text)),
            offset: t.at,
        });
    }
    let mut vars: Vec<u32> = Vec::new();
    for op in &p.ops {
        if let Op::Var(s) = op {
            if !vars.contains(s) {
                vars.push(*s);
            }
        }
    }
    Ok(Program { text: text.to_string(), ops: p.ops, spans: p.spans, max_stack: p.max_stack, ty, vars })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Int(u64),
    /// An integer literal above u64::MAX (always an error, reported where it is used).
    Huge,
    Ident,
    Sym(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Token {
    tok: Tok,
    at: usize,
    end: usize,
}

impl Token {
    fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.at..self.end]
    }
}

const SYMBOLS: &[&str] = &["||", "&&", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "!", "(", ")", ","];

fn lex(text: &str) -> Result<Vec<Token>, CompileError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_digit() {
            let mut v: Option<u64> = Some(0);
            while i < b.len() && b[i].is_ascii_digit() {
                v = v.and_then(|v| v.checked_mul(10)).and_then(|v| v.checked_add((b[i] - b'0') as u64));
                i += 1;
            }
            if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_' || b[i] == b'.') {
                return Err(CompileError {
                    message: "numbers are whole decimal integers (no suffix, fraction or exponent)".into(),
                    offset: start,
                });
            }
            v.map(Tok::Int).unwrap_or(Tok::Huge)
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            Tok::Ident
        } else if let Some(s) = SYMBOLS.iter().find(|s| b[i..].starts_with(s.as_bytes())) {
            i += s.len();
            Tok::Sym(s)
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            let hint = match ch {
                '=' => ": comparison is `==`",
                '&' => ": logical and is `&&`",
                '|' => ": logical or is `||`",
                _ => "",
            };
            return Err(CompileError { message: format!("unexpected character {ch:?}{hint}"), offset: i });
        };
        out.push(Token { tok, at: start, end: i });
    }
    Ok(out)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    names: &'a [&'a str],
    ops: Vec<Op>,
    spans: Vec<(u32, u32)>,
    depth: usize,
    stack: usize,
    max_stack: usize,
}

/// Binary operator levels, loosest first; `||` and `&&` are handled apart (short-circuit).
const LEVELS: &[&[(&str, Bin)]] = &[
    &[("==", Bin::Eq), ("!=", Bin::Ne)],
    &[("<", Bin::Lt), ("<=", Bin::Le), (">", Bin::Gt), (">=", Bin::Ge)],
    &[("+", Bin::Add), ("-", Bin::Sub)],
    &[("*", Bin::Mul), ("/", Bin::Div), ("%", Bin::Rem)],
];

impl<'a> Parser<'a> {
    fn fail<T>(&self, message: String, offset: usize) -> Result<T, CompileError> {
        Err(CompileError { message, offset })
    }

    fn peek_sym(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some(Token { tok: Tok::Sym(s), .. }) => Some(s),
            _ => None,
        }
    }

    /// Byte offset of the next token (or the end).
    fn here(&self) -> usize {
        self.tokens.get(self.pos).map(|t| t.at).unwrap_or(self.text.len())
    }

    /// End of the last token consumed.
    fn last_end(&self) -> usize {
        self.pos.checked_sub(1).map(|i| self.tokens[i].end).unwrap_or(0)
    }

    fn emit(&mut self, op: Op, start: usize) {
        self.stack = match op {
            Op::Const(_) | Op::Var(_) => self.stack + 1,
            Op::Bin(_) | Op::AndJump(_) | Op::OrJump(_) => self.stack.saturating_sub(1),
            Op::Neg | Op::Not => self.stack,
        };
        self.max_stack = self.max_stack.max(self.stack + 1);
        self.ops.push(op);
        self.spans.push((start as u32, self.last_end() as u32));
    }

    fn expect_type(&self, got: Type, want: Type, op: &str, start: usize) -> Result<(), CompileError> {
        if got == want {
            return Ok(());
        }
        let what = &self.text[start..self.last_end().max(start)];
        self.fail(format!("`{op}` needs {}, but `{what}` is {}", want.noun(), got.noun()), start)
    }

    fn expr(&mut self) -> Result<Type, CompileError> {
        self.logic(0)
    }

    /// Level 0 is `||`, level 1 `&&`; both jump over their right side once the result is known.
    fn logic(&mut self, level: usize) -> Result<Type, CompileError> {
        let (sym, start) = (if level == 0 { "||" } else { "&&" }, self.here());
        let mut ty = if level == 0 { self.logic(1)? } else { self.binary(0)? };
        while self.peek_sym() == Some(sym) {
            self.expect_type(ty, Type::Bool, sym, start)?;
            self.pos += 1;
            let jump = self.ops.len();
            self.emit(if level == 0 { Op::OrJump(0) } else { Op::AndJump(0) }, start);
            let rstart = self.here();
            let rty = if level == 0 { self.logic(1)? } else { self.binary(0)? };
            self.expect_type(rty, Type::Bool, sym, rstart)?;
            let to = self.ops.len() as u32;
            self.ops[jump] = if level == 0 { Op::OrJump(to) } else { Op::AndJump(to) };
            ty = Type::Bool;
        }
        Ok(ty)
    }

    fn binary(&mut self, level: usize) -> Result<Type, CompileError> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let start = self.here();
        let mut ty = self.binary(level + 1)?;
        while let Some(&(sym, op)) = self.peek_sym().and_then(|s| LEVELS[level].iter().find(|(t, _)| *t == s)) {
            let comparison = matches!(op, Bin::Eq | Bin::Ne);
            if !comparison {
                self.expect_type(ty, Type::Int, sym, start)?;
            }
            self.pos += 1;
            let rstart = self.here();
            let rty = self.binary(level + 1)?;
            self.expect_type(rty, if comparison { ty } else { Type::Int }, sym, rstart)?;
            self.emit(Op::Bin(op), start);
            ty = if level <= 1 { Type::Bool } else { Type::Int };
        }
        Ok(ty)
    }

    /// Prefix operators are collected in a loop (a long chain costs no recursion).
    fn unary(&mut self) -> Result<Type, CompileError> {
        let mut prefix: Vec<(&'static str, usize)> = Vec::new();
        while let Some(s @ ("-" | "!")) = self.peek_sym() {
            prefix.push((s, self.here()));
            self.pos += 1;
        }
        // `-9223372036854775808` is a literal, not the negation of one too large for i64.
        let mut ty = match (prefix.last(), self.tokens.get(self.pos).map(|t| t.tok)) {
            (Some(&("-", at)), Some(Tok::Int(v))) if v <= 1 << 63 => {
                prefix.pop();
                self.pos += 1;
                self.emit(Op::Const((v as i64).wrapping_neg()), at);
                Type::Int
            }
            _ => self.atom()?,
        };
        for (sym, at) in prefix.into_iter().rev() {
            let (want, op) = if sym == "-" { (Type::Int, Op::Neg) } else { (Type::Bool, Op::Not) };
            self.expect_type(ty, want, sym, at + 1)?;
            self.emit(op, at);
            ty = want;
        }
        Ok(ty)
    }

    fn atom(&mut self) -> Result<Type, CompileError> {
        let Some(&t) = self.tokens.get(self.pos) else {
            return self.fail("the expression ends where a value is expected".into(), self.text.len());
        };
        self.pos += 1;
        match t.tok {
            Tok::Int(v) => match i64::try_from(v) {
                Ok(v) => {
                    self.emit(Op::Const(v), t.at);
                    Ok(Type::Int)
                }
                Err(_) => self.fail(format!("{} does not fit in a 64-bit integer", t.text(self.text)), t.at),
            },
            Tok::Huge => self.fail(format!("{} does not fit in a 64-bit integer", t.text(self.text)), t.at),
            Tok::Sym("(") => {
                let ty = self.nested(|p| p.expr())?;
                self.close(")", t.at)?;
                Ok(ty)
            }
            Tok::Sym(s) => self.fail(format!("expected a value, found `{s}`"), t.at),
            Tok::Ident if self.peek_sym() == Some("(") => self.call(t),
            Tok::Ident => {
                let name = t.text(self.text);
                match name {
                    "true" | "false" => {
                        self.emit(Op::Const((name == "true") as i64), t.at);
                        return Ok(Type::Bool);
                    }
                    _ => {}
                }
                match self.names.iter().position(|n| *n == name) {
                    Some(slot) => {
                        self.emit(Op::Var(slot as u32), t.at);
                        Ok(Type::Int)
                    }
                    None => self.fail(format!("unknown name {name:?} (known: {})", self.names.join(", ")), t.at),
                }
            }
        }
    }

    fn call(&mut self, f: Token) -> Result<Type, CompileError> {
        let name = f.text(self.text);
        let op = match name {
            "ceil_div" => Bin::CeilDiv,
            "min" => Bin::Min,
            "max" => Bin::Max,
            _ => return self.fail(format!("unknown function {name:?} (known: ceil_div, min, max)"), f.at),
        };
        self.pos += 1; // "("
        for i in 0..2 {
            let start = self.here();
            let ty = self.nested(|p| p.expr())?;
            self.expect_type(ty, Type::Int, name, start)?;
            let sep = if i == 0 { "," } else { ")" };
            if self.peek_sym() != Some(sep) {
                return self.fail(format!("{name} takes two numbers: expected `{sep}`"), self.here());
            }
            self.pos += 1;
        }
        self.emit(Op::Bin(op), f.at);
        Ok(Type::Int)
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, CompileError>) -> Result<T, CompileError> {
        if self.depth >= MAX_DEPTH {
            return self.fail(format!("parentheses and calls nest more than {MAX_DEPTH} deep"), self.here());
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn close(&mut self, sym: &str, open_at: usize) -> Result<(), CompileError> {
        if self.peek_sym() == Some(sym) {
            self.pos += 1;
            return Ok(());
        }
        self.fail(format!("`(` at column {} is not closed", open_at + 1), self.here())
    }
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;
