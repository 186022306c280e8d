"""Read Verilog that wrapkit did not write: pyverilog's parser and dataflow analysis, quietly.

pyverilog preprocesses with Icarus (``iverilog -E``), parses with PLY and elaborates the
design below a top module into a flat dataflow: every signal by its hierarchical name
(``top.accum.acc``) with its resolved width, and the expression trees that drive it. This
module wraps it so that it

* writes nothing into the working folder (pyverilog puts its preprocessor output and parser
  tables into the current directory by default) and prints nothing;
* blanks out attributes (``(* full_case *)``), which its grammar rejects inside statements;
* drops the initial values of ``reg x = 0;`` declarations, which pyverilog's dataflow would
  otherwise take as the only driver of ``x`` (losing the clocked assignment: Amaranth writes
  every register that way);
* turns a parse failure, a missing top or an unresolvable width into a one-line
  :class:`~wrapkit.common.errors.UserError` naming the file and the construct.
"""

import contextlib
import functools
import io
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from wrapkit.common.errors import UserError

__all__ = ["Dataflow", "Port", "VerilogDesign", "read_dataflow", "read_design"]

# SystemVerilog keywords: pyverilog accepts some of them, but the flows' Icarus and Yosys read
# Verilog-2005, so the import refuses them up front, by name.
_SYSTEMVERILOG = ("always_ff", "always_comb", "always_latch", "logic", "interface", "modport",
                  "typedef", "struct", "package", "unique", "priority")
_COMMENTS = re.compile(r"//[^\n]*|/\*[\s\S]*?\*/|\"(?:\\.|[^\"\\])*\"")


@dataclass(frozen=True)
class Port:
    """One port of the top module: name, ``"input"``/``"output"``/``"inout"``, width in bits
    and whether it is declared ``signed``."""

    name: str
    direction: str
    width: int
    signed: bool

    def describe(self):
        return (f"{self.direction} {'signed ' if self.signed else ''}"
                f"{'' if self.width == 1 else f'[{self.width - 1}:0] '}{self.name}")


@dataclass
class VerilogDesign:
    """What :func:`read_design` learned about a design.

    Attributes
    ----------
    files : list of Path
    top : str
    modules : list of str
        Every module the files define, in file order.
    ports : list of Port
        The top's ports in declaration order, widths resolved with the parameters' defaults.
    parameters : dict
        The top's parameters -> resolved integer values.
    instances : dict
        Hierarchical instance path below the top (``"core.mult"``) -> module name.
    clocked : dict
        Clock name -> edge of the ``always`` blocks that use it ("posedge"/"negedge").
    resets : dict
        Signal -> edge, for signals in an ``always`` sensitivity list next to a clock edge
        (asynchronous resets).
    """

    files: list
    top: str
    modules: list
    ports: list
    parameters: dict
    instances: dict
    clocked: dict = field(default_factory=dict)
    resets: dict = field(default_factory=dict)

    def port(self, name):
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass
class Dataflow:
    """A flattened design: ``widths`` (signal -> bits), ``drivers`` (signal -> list of
    pyverilog dataflow trees, one per assignment), ``registers`` (signals assigned on a
    clock edge) and ``top``. Names are hierarchical (``top.inst.sig``)."""

    top: str
    widths: dict
    drivers: dict
    registers: set
    inputs: set


def _check_files(paths):
    files = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise UserError(f"Verilog file {path} not found; give the path of your design")
        text = path.read_text(encoding="utf-8", errors="replace")
        code = _COMMENTS.sub(" ", text)
        for word in _SYSTEMVERILOG:
            m = re.search(rf"\b{word}\b", code)
            if m:
                line = code[:m.start()].count("\n") + 1
                raise UserError(f"{path.name}:{line}: unsupported construct {word!r} "
                                f"(SystemVerilog); the import and the flows read Verilog-2005")
        if re.search(r"^\s*`include\b", text, re.M):
            raise UserError(f"{path} uses `include, which the import does not follow; list "
                            f"every file of the design on the command line instead")
        files.append(path.resolve())
    if not files:
        raise UserError("no Verilog file given")
    return files


def _preprocess(files, tmp):
    from pyverilog.vparser.preprocessor import VerilogPreprocessor

    out = Path(tmp) / "preprocessed.v"
    pre = VerilogPreprocessor([str(f) for f in files], str(out), None, None)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            pre.preprocess()
    except Exception as exc:  # pyverilog raises bare exceptions from the subprocess
        raise UserError(f"Icarus could not preprocess {', '.join(f.name for f in files)} "
                        f"({exc}); fix the Verilog so that `iverilog -E` accepts it") from None
    if not out.is_file():
        raise UserError(f"Icarus could not preprocess {', '.join(f.name for f in files)}; fix "
                        f"the Verilog so that `iverilog -E` accepts it")
    return out.read_text(encoding="utf-8", errors="replace")


# Verilog attributes, ``(* full_case *)``: hints to tools that pyverilog's grammar rejects inside
# statements. ``@(*)`` is not one.
_ATTRIBUTE = re.compile(r"\(\*(?!\))[\s\S]*?\*\)")


def _blank(match):
    """Spaces for an attribute, newlines kept, so parse errors still name the right line."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _parse(files):
    """(AST, preprocessed text) of ``files``, parser tables and scratch files in a temp dir."""
    from pyverilog.vparser.lexer import VerilogLexer
    from pyverilog.vparser.parser import ParseError

    with tempfile.TemporaryDirectory(prefix="wrapkit-pyverilog-") as tmp:
        text = _ATTRIBUTE.sub(_blank, _preprocess(files, tmp))
    parser = _parser()
    # A fresh lexer per file: PLY's lexer keeps its line count between inputs.
    parser.lexer = VerilogLexer(error_func=parser._lexer_error_func)
    parser.lexer.build()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            ast = parser.parse(text, debug=0)
        except ParseError as exc:
            raise UserError(_parse_problem(files, text, str(exc))) from None
    return ast, text


@functools.lru_cache(maxsize=1)
def _parser():
    """One pyverilog parser per process: building its LALR tables takes a second or two, and
    PLY would write them into the working folder if not given another."""
    from pyverilog.vparser.parser import VerilogParser

    sink = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="wrapkit-pyverilog-") as tmp, \
            contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        return VerilogParser(outputdir=tmp, debug=False)


def _parse_problem(files, text, message):
    names = ", ".join(f.name for f in files)
    m = re.search(r"line:(\d+)", message)
    line = text.splitlines()[int(m.group(1)) - 1].strip() if m and int(m.group(1)) <= len(
        text.splitlines()) else ""
    where = f" near {line!r}" if line else ""
    return (f"{names}: unsupported construct or syntax error{where} (pyverilog: {message}); "
            f"the import reads plain Verilog-2005")


def _drop_reg_initialisers(ast):
    """Remove ``= value`` from ``reg x = value;`` declarations (see the module docstring)."""
    from pyverilog.vparser import ast as vast

    def walk(node):
        if isinstance(node, vast.Decl):
            regs = {item.name for item in node.list if isinstance(item, vast.Reg)}
            node.list = tuple(item for item in node.list
                              if not (isinstance(item, vast.Assign)
                                      and isinstance(item.left.var, vast.Identifier)
                                      and item.left.var.name in regs))
        for child in node.children():
            walk(child)

    walk(ast)
    return ast


def _modules(ast):
    from pyverilog.vparser import ast as vast

    return [d for d in ast.description.definitions if isinstance(d, vast.ModuleDef)]


def _elaborate(ast, top):
    """pyverilog's module, signal and bind visitors on an (edited) AST."""
    from pyverilog.dataflow.bindvisitor import BindVisitor
    from pyverilog.dataflow.modulevisitor import ModuleVisitor
    from pyverilog.dataflow.optimizer import VerilogDataflowOptimizer
    from pyverilog.dataflow.signalvisitor import SignalVisitor

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        module_visitor = ModuleVisitor()
        module_visitor.visit(ast)
        table = module_visitor.get_moduleinfotable()
        signal_visitor = SignalVisitor(table, top)
        signal_visitor.start_visit()
        bind_visitor = BindVisitor(table, top, signal_visitor.getFrameTable(), noreorder=False)
        bind_visitor.start_visit()
        dataflow = bind_visitor.getDataflows()
        optimizer = VerilogDataflowOptimizer(dataflow.getTerms(), dataflow.getBinddict())
        optimizer.resolveConstant()
    return bind_visitor.getFrameTable(), optimizer.getResolvedTerms(), \
        optimizer.getResolvedBinddict(), optimizer.getConstlist()


def _const(value, what):
    try:
        return int(value.value)
    except (AttributeError, TypeError, ValueError):
        raise UserError(f"cannot resolve {what} to a constant (got {value}); give parameters "
                        f"default values") from None


def _width(term, name):
    return _const(term.msb, f"the msb of {name}") - _const(term.lsb, f"the lsb of {name}") + 1


def _load(paths, top):
    files = _check_files(paths)
    ast, _ = _parse(files)
    modules = [m.name for m in _modules(ast)]
    if top not in modules:
        raise UserError(f"--top {top!r} is not a module of {', '.join(f.name for f in files)} "
                        f"(it defines {', '.join(modules) or 'no module'})")
    _drop_reg_initialisers(ast)
    try:
        _, terms, binds, consts = _elaborate(ast, top)
    except Exception as exc:  # pyverilog's elaboration errors are plain exceptions
        raise UserError(f"pyverilog cannot elaborate {top!r} ({type(exc).__name__}: {exc}); "
                        f"the import reads plain Verilog-2005 with resolvable widths") from None
    return files, ast, modules, terms, binds, consts


def read_design(paths, top):
    """Modules, top ports (widths resolved), parameters and instance hierarchy of a design.

    Parameters
    ----------
    paths : list of path-like
        The Verilog files (no ``include``; each is preprocessed by Icarus).
    top : str
        The top module.

    Returns
    -------
    VerilogDesign

    Raises
    ------
    UserError
        Missing file, syntax pyverilog cannot parse (the construct is named), unknown top,
        a width that does not resolve to a constant.
    """
    from pyverilog.vparser import ast as vast

    files, ast, modules, terms, binds, consts = _load(paths, top)
    by_name = {m.name: m for m in _modules(ast)}
    ports = []
    for p_name in _port_order(by_name[top]):
        term = terms.get(_term_key(terms, f"{top}.{p_name}"))
        if term is None:
            raise UserError(f"port {p_name!r} of {top!r} has no declaration pyverilog can read")
        kinds = {str(t) for t in term.termtype}
        direction = ("input" if "Input" in kinds else "output" if "Output" in kinds
                     else "inout" if "Inout" in kinds else None)
        if direction is None:
            raise UserError(f"port {p_name!r} of {top!r} has no direction")
        ports.append(Port(p_name, direction, _width(term, f"port {p_name}"),
                          _is_signed(by_name[top], p_name)))
    parameters = {}
    for key, term in terms.items():
        kinds = {str(t) for t in term.termtype}
        scope = str(key)
        if ("Parameter" in kinds or "Localparam" in kinds) and scope.count(".") == 1 \
                and scope.startswith(f"{top}."):
            value = consts.get(key)
            name = scope.split(".", 1)[1]
            if "Parameter" in kinds:
                parameters[name] = _const(value, f"parameter {name}") if value is not None \
                    else None
    instances = {}

    def walk(module, prefix):
        for item in _items(by_name[module]):
            if isinstance(item, vast.InstanceList):
                for inst in item.instances:
                    if inst.module in by_name:
                        path = f"{prefix}{inst.name}"
                        instances[path] = inst.module.lstrip("\\")
                        walk(inst.module, path + ".")

    walk(top, "")
    clocked, resets = _sensitivities(by_name, top, set(by_name) & {
        m for m in by_name if m.lstrip("\\") in instances.values()})
    return VerilogDesign(files, top, modules, ports, parameters, instances, clocked, resets)


def _term_key(terms, name):
    for key in terms:
        if str(key) == name:
            return key
    return None


def _items(module):
    return module.items or ()


def _port_order(module):
    from pyverilog.vparser import ast as vast

    names = []
    for p in module.portlist.ports if module.portlist else ():
        if isinstance(p, vast.Ioport):
            names.append(p.first.name)
        elif isinstance(p, vast.Port):
            names.append(p.name)
    return names


def _is_signed(module, name):
    from pyverilog.vparser import ast as vast

    found = []

    def walk(node):
        if isinstance(node, (vast.Input, vast.Output, vast.Inout, vast.Reg, vast.Wire)) \
                and node.name == name:
            found.append(bool(node.signed))
        for child in node.children():
            walk(child)

    walk(module)
    return any(found)


def _sensitivities(by_name, top, used):
    """Clock edges and asynchronous resets of the ``always`` blocks of ``top`` and the
    modules in ``used``."""
    from pyverilog.vparser import ast as vast

    clocked, resets = {}, {}
    for module in {top, *used}:
        def walk(node):
            if isinstance(node, vast.Always) and node.sens_list is not None:
                edges = [s for s in node.sens_list.list if s.type in ("posedge", "negedge")]
                if edges:
                    clock = edges[0]
                    clocked.setdefault(str(clock.sig), clock.type)
                    for s in edges[1:]:
                        resets.setdefault(str(s.sig), s.type)
            for child in node.children():
                walk(child)

        walk(by_name[module])
    return clocked, resets


def read_dataflow(paths, top):
    """The flattened dataflow of ``top`` (see :class:`Dataflow`).

    Raises like :func:`read_design`.
    """
    files, ast, modules, terms, binds, consts = _load(paths, top)
    widths, drivers, registers, inputs = {}, {}, set(), set()
    for key, term in terms.items():
        name = str(key)
        kinds = {str(t) for t in term.termtype}
        if kinds & {"Parameter", "Localparam", "Genvar", "Function", "Task"}:
            continue
        try:
            widths[name] = _width(term, name)
        except UserError:
            continue
        if "Input" in kinds and name.count(".") == 1:
            inputs.add(name)
    for key, bind_list in binds.items():
        name = str(key)
        for bind in bind_list:
            if bind.tree is None:
                continue
            drivers.setdefault(name, []).append(bind)
            if bind.alwaysinfo is not None and bind.alwaysinfo.isClockEdge():
                registers.add(name)
    return Dataflow(top, widths, drivers, registers, inputs)
