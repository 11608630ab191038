#!/bin/sh
# Writes the nst(1) man page (roff) to stdout from `nst --help` and `nst --version`, so the page
# lists exactly the options the program has.   Usage: sh tools/help2man.sh build/nst > build/nst.1
# Help layout it relies on: the usage line, a description paragraph, then sections (a line starting
# in column 0) of options ("  -o, --output FILE   text", continued by deeply indented lines), then
# closing paragraphs after a blank line.
set -eu
NST=${1:-build/nst}
version=$("$NST" --version | sed -n '1s/^nst //p')
"$NST" --help | awk -v version="$version" '
function esc(s) { gsub(/\\/, "\\e", s); gsub(/-/, "\\-", s); sub(/^\./, "\\\\\\&.", s); sub(/^'"'"'/, "\\\\\\&'"'"'", s); return s }
BEGIN {
  print ".TH NST 1 \"\" \"nst " version "\" \"User Commands\""
  print ".SH NAME"
  print "nst \\- neural style transfer (Gatys et al.) on the CPU"
  state = "usage"
}
state == "usage" {
  sub(/^usage: */, "")
  print ".SH SYNOPSIS"
  print ".B nst"
  rest = $0; sub(/^nst */, "", rest)
  print esc(rest)
  print ".SH DESCRIPTION"
  state = "desc"; next
}
state == "desc" && /^[A-Z][a-z]+$/ { print ".SH OPTIONS"; state = "opts" }
state == "desc" { print esc($0); next }
state == "opts" && /^$/ { print ".SH NOTES"; state = "notes"; next }
state == "opts" && /^[^ ]/ { print ".SS " esc($0); next }
state == "opts" && match($0, /^ +-/) && RLENGTH <= 7 {
  line = $0; sub(/^ +/, "", line)
  # the option part ends at the first run of two or more spaces
  if (match(line, /  +/)) { opt = substr(line, 1, RSTART - 1); text = substr(line, RSTART + RLENGTH) }
  else { opt = line; text = "" }
  print ".TP"
  print "\\fB" esc(opt) "\\fR"
  if (text != "") print esc(text)
  next
}
state == "opts" { line = $0; sub(/^ +/, "", line); print esc(line); next }
state == "notes" { if ($0 == "") print ".PP"; else print esc($0) }
END {
  print ".SH SEE ALSO"
  print "nst\\-convert(1) converts weight files to .nstw; nst\\-inspect(1) inspects them. The library is"
  print "the single header nst.h (pkg\\-config nst)."
}'
