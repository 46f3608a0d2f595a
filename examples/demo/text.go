package main

import (
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"
)

// Text widths, in columns.
const (
	// defaultWidth is the width when the output is not a terminal, or the
	// terminal does not say: 80 columns, the default of most terminals.
	defaultWidth = 80
	// maxWidth caps the width text is wrapped at on wide terminals: longer
	// lines are hard to read.
	maxWidth = 100
	// minWidth is the narrowest layout: below it, lines may overflow.
	minWidth = 40
)

// terminal reports whether w is a terminal, and its width if it is and
// says so (0 otherwise).
func terminal(w io.Writer) (isTerm bool, width int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		return true, 0
	}
	return true, width
}

// textWidth is the width the demo lays its text out in: the terminal's,
// at most maxWidth, or defaultWidth where the terminal's is not known.
func textWidth(termWidth int) int {
	if termWidth <= 0 {
		return defaultWidth
	}
	return max(minWidth, min(termWidth, maxWidth))
}

// wrap breaks text into lines of at most width columns, at spaces only:
// the first line starts with first, the others with rest. A word longer
// than a whole line is put on a line of its own rather than cut. Runs of
// spaces collapse to one.
func wrap(text string, width int, first, rest string) []string {
	var lines []string
	line, n := first, utf8.RuneCountInString(first)
	empty := true // line holds no word yet
	for _, w := range strings.Fields(text) {
		wn := utf8.RuneCountInString(w)
		if !empty && n+1+wn > width {
			lines = append(lines, line)
			line, n, empty = rest, utf8.RuneCountInString(rest), true
		}
		if !empty {
			line += " "
			n++
		}
		line += w
		n += wn
		empty = false
	}
	return append(lines, line)
}

// wrapString is wrap joined into one string, each line ending in "\n".
func wrapString(text string, width int, first, rest string) string {
	return strings.Join(wrap(text, width, first, rest), "\n") + "\n"
}

// pack joins parts with sep into lines of at most width columns, breaking
// only between parts (or, for a part too long for a line of its own,
// between its words): the first line starts with first, the others with
// rest.
func pack(parts []string, sep string, width int, first, rest string) []string {
	var lines []string
	line, n := first, utf8.RuneCountInString(first)
	empty := true
	for _, p := range parts {
		pn := utf8.RuneCountInString(p)
		switch {
		case empty && n+pn <= width, !empty && n+len(sep)+pn <= width:
			if !empty {
				line += sep
				n += len(sep)
			}
			line += p
			n += pn
			empty = false
			continue
		}
		if !empty {
			lines = append(lines, line)
			line, n = rest, utf8.RuneCountInString(rest)
		}
		if n+pn <= width {
			line += p
			n += pn
			empty = false
			continue
		}
		ws := wrap(p, width, line, rest)
		lines = append(lines, ws[:len(ws)-1]...)
		line = ws[len(ws)-1]
		n, empty = utf8.RuneCountInString(line), false
	}
	return append(lines, line)
}

// fit returns s if it fits in width columns, or else its longest prefix
// that does and ends at the end of a part ("; " or ", " separated) or, if
// none does, of a word: it never cuts a word and adds no "…". It is the
// safety net of lines whose layout was made for a width of defaultWidth,
// on a narrower terminal.
func fit(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	runes := []rune(s)
	cut := string(runes[:width+1]) // a space just past width keeps the word before it
	for _, sep := range []string{"; ", ", ", " "} {
		if i := strings.LastIndex(cut, sep); i > 0 {
			return strings.TrimRight(cut[:i], " ,;")
		}
	}
	return ""
}
