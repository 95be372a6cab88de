// Package docs is the user documentation (the Markdown files here and the
// README); it holds no code. Its test checks that every relative link of
// the repository's Markdown resolves, anchors included, and that the
// flag tables of OPERATIONS.md and the binary's help list the same flags.
package docs
