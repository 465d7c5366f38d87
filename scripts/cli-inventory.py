#!/usr/bin/env python3
"""Extract every command and flag of restic's CLI from its Go sources.

Usage: scripts/cli-inventory.py RESTIC_SOURCE_DIR > tests/data/restic-0.18.1-cli.tsv

RESTIC_SOURCE_DIR is a checkout of github.com/restic/restic at the tag the
inventory describes (v0.18.1): the script reads cmd/restic/*.go and the two
pattern-option files in internal/filter. It follows restic's own structure:
each `newXCommand` function names its command (`Use:`) and the options type
whose `AddFlags`/`Add` method defines the flags; helper calls
(`initMultiSnapshotFilter`, `ExcludePatternOptions.Add`, ...) are expanded.

Output: one tab-separated line per command and per flag:

    command <path>                          (e.g. "repair packs")
    flag    <path> <long> <short> <type> <visibility>

`<path>` is "global" for the root command's persistent flags. `<type>` is the
pflag value type (`bool`, `string`, `stringArray`, `TagLists`, ...).
`<visibility>` is `shown`, `hidden` (MarkHidden), or `deprecated`
(MarkDeprecated: pflag hides it from help but still parses it).

Commands built only with debug tags (`debug`, the profiling flags) and
Windows-only flags are left out, as a Linux release build has none of them.
`self-update` (build tag `selfupdate`) and `mount` (Linux) are included.
"""

import os
import re
import sys

FLAG_CALL = re.compile(
    r'\b(?:f|flags)\.(?P<method>[A-Za-z]*VarP?)\((?P<args>.*)\)\s*$'
)
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')

# pflag type name of each typed definer.
METHOD_TYPES = {
    "BoolVar": "bool",
    "StringVar": "string",
    "StringArrayVar": "stringArray",
    "StringSliceVar": "stringSlice",
    "IntVar": "int",
    "UintVar": "uint",
    "DurationVar": "duration",
    "CountVar": "count",
}

# Type() of the custom pflag.Value types behind Var/VarP, by field name.
VALUE_TYPES = {
    "GroupBy": "group",
    "Tags": "TagLists",
    "KeepTags": "TagLists",
    "SetTags": "TagLists",
    "AddTags": "TagLists",
    "RemoveTags": "TagLists",
    "Last": "n",
    "Hourly": "n",
    "Daily": "n",
    "Weekly": "n",
    "Monthly": "n",
    "Yearly": "n",
    "Within": "duration",
    "WithinHourly": "duration",
    "WithinDaily": "duration",
    "WithinWeekly": "duration",
    "WithinMonthly": "duration",
    "WithinYearly": "duration",
    "Sort": "mode",
    "Compression": "mode",
    "Overwrite": "behavior",
}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def functions(source):
    """Map of function name (with receiver type for methods) to its body."""
    result = {}
    pattern = re.compile(r'^func (?:\((?P<recv>[^)]*)\) )?(?P<name>\w+)\(', re.M)
    starts = list(pattern.finditer(source))
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(source)
        recv = match.group("recv") or ""
        recv_type = recv.split()[-1].lstrip("*") if recv else ""
        key = f"{recv_type}.{match.group('name')}" if recv_type else match.group("name")
        result[key] = source[match.start():end]
    return result


def parse_flag_call(line):
    match = FLAG_CALL.search(line.strip())
    if not match:
        return None
    method = match.group("method")
    args = match.group("args")
    strings = STRING.findall(args)
    target = args.split(",")[0].strip().lstrip("&")
    field = target.split(".")[-1]
    with_short = method.endswith("P")
    base = method[:-1] if with_short else method
    long_name = strings[0]
    short = strings[1] if with_short and len(strings) > 1 else ""
    if base == "Var":
        flag_type = VALUE_TYPES.get(field)
        if flag_type is None:
            raise SystemExit(f"unknown Value type for field {field}: {line.strip()}")
    else:
        flag_type = METHOD_TYPES.get(base)
        if flag_type is None:
            raise SystemExit(f"unknown definer {method}: {line.strip()}")
    return long_name, short, flag_type


class Inventory:
    def __init__(self, root):
        self.root = root
        self.funcs = {}
        cmd_dir = os.path.join(root, "cmd", "restic")
        for name in sorted(os.listdir(cmd_dir)):
            if not name.endswith(".go") or name.endswith("_test.go"):
                continue
            if name in ("cmd_debug.go", "global_debug.go", "cmd_mount_disabled.go",
                        "cmd_self_update_disabled.go"):
                continue
            self.funcs.update(functions(read(os.path.join(cmd_dir, name))))
        for name in ("exclude.go", "include.go"):
            source = read(os.path.join(root, "internal", "filter", name))
            self.funcs.update(functions(source))

    def flags_of_body(self, body, skip_windows=True):
        """Flags defined in a function body, helpers expanded, in order."""
        flags = []
        visibility = {}
        in_windows = False
        depth_at_windows = None
        depth = 0
        for line in body.splitlines():
            stripped = line.strip()
            if 'runtime.GOOS == "windows"' in stripped and stripped.startswith("if"):
                in_windows = True
                depth_at_windows = depth
            depth += line.count("{") - line.count("}")
            if in_windows:
                if depth <= depth_at_windows:
                    in_windows = False
                continue
            parsed = parse_flag_call(stripped)
            if parsed:
                flags.append(parsed)
                continue
            hidden = re.search(r'\.Mark(Deprecated|Hidden)\("([^"]+)"', stripped)
            if hidden:
                visibility[hidden.group(2)] = (
                    "deprecated" if hidden.group(1) == "Deprecated" else "hidden")
                continue
            helper = self.helper_flags(stripped)
            if helper is not None:
                flags.extend(helper[0])
                visibility.update(helper[1])
        return flags, visibility

    def helper_flags(self, line):
        multi = re.match(r'initMultiSnapshotFilter\(\w+, [^,]+, (true|false)\)', line)
        if multi:
            short = "H" if multi.group(1) == "true" else ""
            return ([("host", short, "stringArray"), ("tag", "", "TagLists"),
                     ("path", "", "stringArray")], {})
        if line.startswith("initSingleSnapshotFilter("):
            return ([("host", "H", "stringArray"), ("tag", "", "TagLists"),
                     ("path", "", "stringArray")], {})
        calls = {
            "opts.ExcludePatternOptions.Add(f)": "ExcludePatternOptions.Add",
            "opts.IncludePatternOptions.Add(f)": "IncludePatternOptions.Add",
            "opts.KeyAddOptions.Add(flags)": "KeyAddOptions.Add",
            "opts.AddLimitedFlags(f)": "PruneOptions.AddLimitedFlags",
        }
        if line in calls:
            return self.flags_of_body(self.funcs[calls[line]])
        if line.startswith("opts.secondaryRepoOptions.AddFlags("):
            return self.flags_of_body(self.funcs["secondaryRepoOptions.AddFlags"])
        return None

    def command(self, constructor):
        body = self.funcs[constructor]
        use = re.search(r'Use:\s+"([^"]+)"', body)
        if not use:
            use = re.search(r'Use:\s+"(\w+)', body)
        name = use.group(1).split()[0]
        flags, visibility = [], {}
        options = re.search(r'(?:opts|profiler\.opts)\.(AddFlags|Add)\(cmd\.Flags\(\)\)', body)
        if options:
            opts_type = re.search(r'var opts (\w+)', body).group(1)
            flags, visibility = self.flags_of_body(
                self.funcs[f"{opts_type}.{options.group(1)}"])
        # Further option sets added in the constructor (forget adds prune's
        # limited flags: `pruneOpts.AddLimitedFlags(cmd.Flags())`).
        for var, method in re.findall(r'(\w+)\.(AddLimitedFlags)\(cmd\.Flags\(\)\)', body):
            var_type = re.search(rf'var {var} (\w+)', body).group(1)
            extra, extra_vis = self.flags_of_body(self.funcs[f"{var_type}.{method}"])
            flags += extra
            visibility.update(extra_vis)
        children = re.findall(r'(new\w+Command)\(\)', body.split("AddCommand(", 1)[1]) \
            if "AddCommand(" in body else []
        return name, flags, visibility, [c for c in children if c != constructor]

    def walk(self):
        rows = []
        global_flags, global_vis = self.flags_of_body(self.funcs["GlobalOptions.AddFlags"])
        for long_name, short, flag_type in global_flags:
            rows.append(("flag", "global", long_name, short, flag_type,
                         global_vis.get(long_name, "shown")))
        root = self.funcs["newRootCommand"]
        constructors = [c for c in re.findall(r'(new\w+Command)\(\)', root)
                        if c != "newRootCommand"]
        constructors += ["newMountCommand", "newSelfUpdateCommand"]
        self.walk_commands(constructors, "", rows)
        return rows

    def walk_commands(self, constructors, prefix, rows):
        entries = []
        for constructor in constructors:
            name, flags, visibility, children = self.command(constructor)
            entries.append((name, flags, visibility, children))
        for name, flags, visibility, children in sorted(entries):
            path = f"{prefix}{name}"
            rows.append(("command", path, "", "", "", ""))
            for long_name, short, flag_type in flags:
                rows.append(("flag", path, long_name, short, flag_type,
                             visibility.get(long_name, "shown")))
            if children:
                self.walk_commands(children, path + " ", rows)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    rows = Inventory(sys.argv[1]).walk()
    print("# restic 0.18.1 command-line inventory, generated by scripts/cli-inventory.py")
    print("# from cmd/restic/*.go and internal/filter/{exclude,include}.go at tag v0.18.1.")
    print("# kind\tcommand\tlong\tshort\ttype\tvisibility")
    for row in rows:
        print("\t".join(row))


if __name__ == "__main__":
    main()
