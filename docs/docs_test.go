package docs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tini-hot/tini-hot/internal/cli"
)

// root is the repository.
const root = ".."

var (
	fence    = regexp.MustCompile("(?ms)^```.*?^```")
	code     = regexp.MustCompile("`[^`\n]*`")
	link     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading  = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
	longFlag = regexp.MustCompile(`--([a-z][a-z-]*)`)
	helpFlag = regexp.MustCompile(`(?m)^ {2}(?:-([a-zA-Z]), )?--([a-z][a-z-]*)`)
)

// markdown returns the repository's Markdown files, by path from root.
func markdown(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			files[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("found %d Markdown files: %v", len(files), files)
	}
	return files
}

// anchors are the fragments GitHub gives the headings of a Markdown text:
// lower case, punctuation dropped, spaces as dashes, "-1", "-2" for
// repeats.
func anchors(text string) map[string]bool {
	text = fence.ReplaceAllString(text, "")
	seen := map[string]int{}
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(text, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(strings.ReplaceAll(m[1], "`", "")) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// brokenLinks lists the relative links of files that lead nowhere: a
// missing file, or a missing heading in a Markdown file.
func brokenLinks(files map[string]string, exists func(string) bool) []string {
	var broken []string
	for name, text := range files {
		text = code.ReplaceAllString(fence.ReplaceAllString(text, ""), "")
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			file := name
			if path != "" {
				file = filepath.Clean(filepath.Join(filepath.Dir(name), path))
				if !exists(file) {
					broken = append(broken, fmt.Sprintf("%s: %s: no file %s", name, target, file))
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			if !anchors(files[file])[frag] {
				broken = append(broken, fmt.Sprintf("%s: %s: no heading #%s in %s", name, target, frag, file))
			}
		}
	}
	slices.Sort(broken)
	return broken
}

// TestLinks: every relative link of the repository's Markdown resolves.
func TestLinks(t *testing.T) {
	files := markdown(t)
	exists := func(path string) bool {
		_, err := os.Stat(filepath.Join(root, path))
		return err == nil
	}
	for _, b := range brokenLinks(files, exists) {
		t.Error(b)
	}
	// The check itself: a missing file and a missing heading are found;
	// a heading of the same file, an absolute URL and links in code are
	// not links to check.
	known := map[string]string{
		"README.md": "# Top\n[a](docs/NOPE.md) [b](docs/X.md#nope) [c](#top) [d](https://x/y) `[e](nope)`\n",
		"docs/X.md": "# Real heading\n[back](../README.md#top) [self](#real-heading)\n```\n[f](nope)\n```\n",
	}
	got := brokenLinks(known, func(p string) bool { return known[p] != "" })
	want := []string{
		"README.md: docs/NOPE.md: no file docs/NOPE.md",
		"README.md: docs/X.md#nope: no heading #nope in docs/X.md",
	}
	if !slices.Equal(got, want) {
		t.Errorf("the link check on known links found %q, want %q", got, want)
	}
}

// TestAnchors: headings become GitHub's fragments.
func TestAnchors(t *testing.T) {
	got := anchors("# Memory: two generations in one limit\n## Short-lived senders: `systemd-notify` and `BARRIER=1`\n## Memory: two generations in one limit\n```\n# not a heading\n```\n")
	for _, want := range []string{"memory-two-generations-in-one-limit", "short-lived-senders-systemd-notify-and-barrier1", "memory-two-generations-in-one-limit-1"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Errorf("a line in a code block became an anchor")
	}
}

// tables returns the rows of the Markdown tables in text whose header
// starts with header, as cells.
func tables(text, header string) [][]string {
	var rows [][]string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, header):
			in = true
		case in && strings.HasPrefix(line, "|---"):
		case in && strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			rows = append(rows, cells)
		default:
			in = false
		}
	}
	return rows
}

// flagsOf are the flags a help text lists, each as "--name" or
// "-x/--name".
func flagsOf(help string) []string {
	var out []string
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		out = append(out, flagName(m[1], m[2]))
	}
	slices.Sort(out)
	return out
}

func flagName(short, long string) string {
	if short != "" {
		return "-" + short + "/--" + long
	}
	return "--" + long
}

// documented are the flags of one table cell: "`-e`, `--remap-exit CODE`".
func documented(cell string) string {
	long := longFlag.FindStringSubmatch(cell)
	if long == nil {
		return ""
	}
	short := regexp.MustCompile("`-([a-zA-Z])`").FindStringSubmatch(cell)
	if short != nil {
		return flagName(short[1], long[1])
	}
	return flagName("", long[1])
}

// TestFlagTables: the flag tables of OPERATIONS.md list exactly the flags
// of `tini-hot --help`, and its subcommand table exactly those of each
// subcommand's --help, both ways.
func TestFlagTables(t *testing.T) {
	b, err := os.ReadFile("OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	ops := string(b)
	cfg, err := cli.Parse([]string{"--help"}, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, row := range tables(ops, "| flag |") {
		if f := documented(row[0]); f != "" {
			docs = append(docs, f)
		}
	}
	slices.Sort(docs)
	compare(t, "tini-hot --help", flagsOf(cli.Usage(cfg.Flags)), docs)

	bySub := map[string][]string{}
	subs := []string{"reload", "status", "probe", "prestop"}
	for _, row := range tables(ops, "| subcommand |") {
		f := documented(row[1])
		for _, sub := range subs {
			if row[0] == "`"+sub+"`" || row[0] == "every one" {
				bySub[sub] = append(bySub[sub], f)
			}
		}
	}
	for _, sub := range subs {
		slices.Sort(bySub[sub])
		compare(t, "tini-hot "+sub+" --help", flagsOf(cli.ClientUsage(sub)), bySub[sub])
	}
}

// compare fails t for each flag in one list and not the other.
func compare(t *testing.T, help string, inHelp, inDocs []string) {
	t.Helper()
	if len(inHelp) < 3 {
		t.Fatalf("%s: found only %v: is the help's layout what flagsOf reads?", help, inHelp)
	}
	for _, f := range inHelp {
		if !slices.Contains(inDocs, f) {
			t.Errorf("%s has %s; docs/OPERATIONS.md does not", help, f)
		}
	}
	for _, f := range inDocs {
		if !slices.Contains(inHelp, f) {
			t.Errorf("docs/OPERATIONS.md has %s; %s does not", f, help)
		}
	}
}
