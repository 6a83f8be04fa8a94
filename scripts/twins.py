#!/usr/bin/env python3
"""What the store backends repeat: functions with the same name on both sides,
and their lines (signature to closing brace, test modules left out).

  python3 scripts/twins.py            # every non-test file of each backend
  python3 scripts/twins.py A.rs ... -- B.rs ...

The shared SQL (crates/store/src/sql/) is on neither side: it is what the
backends no longer repeat.
"""
import glob, os, re, sys
if '--' in sys.argv:
    sep = sys.argv.index('--')
    A, B = sys.argv[1:sep], sys.argv[sep+1:]
else:
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'crates', 'store', 'src')
    def side(name):
        return sorted(f for f in glob.glob(os.path.join(src, name, '**', '*.rs'), recursive=True)
                      if not re.search(r'(/tests\.rs|/tests/)', f))
    A, B = side('sqlite'), side('postgres')
fn_re = re.compile(r'^\s*(pub(\([a-z]+\))? )?(async )?fn ([a-z_0-9]+)')
def fns(files):
    out = {}
    for f in files:
        lines = open(f).read().split('\n')
        # skip test modules
        cut = next((i for i, l in enumerate(lines) if l.startswith('#[cfg(test)]')), len(lines))
        lines = lines[:cut]
        for i, l in enumerate(lines):
            m = fn_re.match(l)
            if not m: continue
            indent = len(l) - len(l.lstrip())
            # end: first later line with same indent that is '}' (or the signature ends with ';')
            j = i
            while j < len(lines):
                if lines[j].startswith(' ' * indent + '}') and len(lines[j]) - len(lines[j].lstrip()) == indent:
                    break
                j += 1
            out.setdefault(m.group(4), 0)
            out[m.group(4)] += j - i + 1
    return out
a, b = fns(A), fns(B)
common = sorted(set(a) & set(b))
print(f"{len(common)} twins: {sum(a[n] for n in common)} lines on the first side, {sum(b[n] for n in common)} on the second")
print(' '.join(common))
if '-v' in os.environ.get('TWINS', ''):
    for n in sorted(common, key=lambda n: -(a[n] + b[n])):
        print(f'  {n}: {a[n]} / {b[n]}')
