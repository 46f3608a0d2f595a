package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWrapBreaksAtSpacesOnly(t *testing.T) {
	for _, tc := range []struct {
		text        string
		width       int
		first, rest string
		want        []string
	}{
		{"one two three", 80, "", "", []string{"one two three"}},
		{"one two three", 7, "", "", []string{"one two", "three"}},
		{"one two three", 9, "  ", "    ", []string{"  one two", "    three"}},
		{"aaaaaaaaaa bb", 5, "", "", []string{"aaaaaaaaaa", "bb"}}, // too long for a line: alone, not cut
		{"a   b\n c", 80, "", "", []string{"a b c"}},
		{"", 80, "> ", "", []string{"> "}},
		{"élan élan", 4, "", "", []string{"élan", "élan"}}, // columns are runes, not bytes
	} {
		got := wrap(tc.text, tc.width, tc.first, tc.rest)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("wrap(%q, %d, %q, %q) = %q, want %q", tc.text, tc.width, tc.first, tc.rest, got, tc.want)
		}
	}
}

func TestPackBreaksBetweenParts(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		width int
		want  []string
	}{
		{[]string{"a b", "c d", "e f"}, 80, []string{"> a b; c d; e f"}},
		{[]string{"a b", "c d", "e f"}, 12, []string{"> a b; c d", "  e f"}},
		{[]string{"a b", "c d", "e f"}, 9, []string{"> a b", "  c d", "  e f"}},
		// A part too long for a line of its own is wrapped at its words.
		{[]string{"x", "one two three four"}, 10, []string{"> x", "  one two", "  three", "  four"}},
	} {
		got := pack(tc.parts, "; ", tc.width, "> ", "  ")
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("pack(%q, %d) = %q, want %q", tc.parts, tc.width, got, tc.want)
		}
	}
}

func TestFitNeverCutsAWord(t *testing.T) {
	for _, tc := range []struct {
		s     string
		width int
		want  string
	}{
		{"open 25, idle 3", 80, "open 25, idle 3"},
		{"open 25, idle 3", 15, "open 25, idle 3"},
		{"open 25, idle 3; accepted 9", 20, "open 25, idle 3"},
		{"open 25, idle 3; accepted 9", 12, "open 25"},
		{"open 25 idle", 9, "open 25"},
		{"open 25 idle", 7, "open 25"}, // the space just past the width counts
		{"connections", 5, ""},
	} {
		got := fit(tc.s, tc.width)
		if got != tc.want {
			t.Errorf("fit(%q, %d) = %q, want %q", tc.s, tc.width, got, tc.want)
		}
		if strings.Contains(got, "…") || utf8.RuneCountInString(got) > tc.width {
			t.Errorf("fit(%q, %d) = %q: longer than the width, or with an ellipsis", tc.s, tc.width, got)
		}
	}
}

func TestTextWidthIsTheTerminalsWithinBounds(t *testing.T) {
	for _, tc := range []struct{ term, want int }{
		{0, defaultWidth}, // not a terminal, or it does not say
		{80, 80},
		{120, maxWidth},
		{20, minWidth},
	} {
		if got := textWidth(tc.term); got != tc.want {
			t.Errorf("textWidth(%d) = %d, want %d", tc.term, got, tc.want)
		}
	}
}

func TestHeaderFitsTheWidthAndKeepsEveryWord(t *testing.T) {
	cfg := config{clients: 24, warmup: 3e9, drainTime: 6e9, drainTimeout: 3e9, probeInterval: 2e8}
	var want []string
	for _, width := range []int{80, 100, 60} {
		var b strings.Builder
		printHeader(&b, cfg, width)
		for _, l := range strings.Split(b.String(), "\n") {
			if n := utf8.RuneCountInString(l); n > width {
				t.Errorf("width %d: line of %d columns: %q", width, n, l)
			}
		}
		// The same words at every width: none was cut.
		words := strings.Fields(b.String())
		if want == nil {
			want = words
		} else if strings.Join(words, " ") != strings.Join(want, " ") {
			t.Errorf("width %d: the words differ from width 80's", width)
		}
	}
	if !strings.Contains(strings.Join(want, " "), "one connection more than there are clients") {
		t.Errorf("the header does not explain the load balancer's connection")
	}
}
