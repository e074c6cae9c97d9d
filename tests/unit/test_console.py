"""Console tails shown on the user's terminal: nothing in them acts on the terminal."""

from __future__ import annotations

import re

import pytest

from vmctl.hypervisor.console import clean, reached, tail

# after cleaning, no character a terminal acts on may remain: C0 but tab and newline, DEL, C1
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[1;31mred\x1b[0m text", "red text"),                        # colours (CSI)
    ("\x1b[2J\x1b[Hcleared", "cleared"),                              # clear screen, cursor home
    ("\x1b[?25lhidden cursor\x1b[?1049h", "hidden cursor"),           # private modes, alternate screen
    ("\x1b[5A\x1b[2Kup", "up"),                                       # cursor up, erase line
    ("\x1b[1 qcursor style", "cursor style"),                         # CSI with an intermediate byte
    ("\x1b]0;pwned title\x07after", "after"),                         # OSC retitle, BEL-terminated
    ("\x1b]2;pwned\x1b\\after", "after"),                             # OSC, ST-terminated
    ("\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\", "link"),        # OSC 8 hyperlink
    ("\x1b]52;c;cm0gLXJmIH4=\x07clip", "clip"),                       # OSC 52: writes the clipboard
    ("before\x1b]0;never ends", "before"),                            # OSC cut off at the line's end
    ("\x1bP+q544e\x1b\\dcs", "dcs"),                                  # DCS (a terminfo query)
    ("\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\ok", "ok"),            # APC, PM, SOS strings
    ("\x1bc\x1b7\x1b8\x1b(0\x1b#8\x1b=ok", "ok"),                     # reset, save/restore, charsets, DECALN
    ("\x9b31mc1 csi\x9b0m", "c1 csi"),                                # 8-bit CSI
    ("\x9d0;title\x9cc1 osc", "c1 osc"),                              # 8-bit OSC and ST
    ("\x85\x8d\x8e\x8fnel ri ss", "nel ri ss"),                       # other C1 controls
    ("bell\x07 back\x08space\x7f del\x00nul\x1a sub", "bell backspace delnul sub"),
    ("form\x0cfeed\x0bvtab\x1c\x1d\x1e\x1f", "formfeedvtab"),
    ("keep\ttabs", "keep\ttabs"),
    ("Loading 10%\rLoading 20%", "Loading 10%Loading 20%"),           # a lone carriage return
    ("trailing escape \x1b", "trailing escape"),                      # cut off at the end of the log
    ("half a csi \x1b[12;3", "half a csi"),
    ("\x1b\x1b[31mdouble", "double"),
    ("ünïcode ✓ stays", "ünïcode ✓ stays"),
])
def test_every_control_sequence_is_stripped(raw: str, shown: str) -> None:
    assert tail(raw) == [shown]
    assert not CONTROL.search(clean(raw).replace("\n", ""))


def test_lines_end_at_newlines_and_crlf_and_empty_lines_are_dropped() -> None:
    text = "one\r\ntwo\r\r\n\x1b[0m\r\n\n  \nthree\n"
    assert tail(text) == ["one", "two", "three"] and tail(text, 2) == ["two", "three"]


def test_an_osc_without_its_end_cannot_swallow_the_lines_after_it() -> None:
    assert tail("\x1b]0;title\nlogin: \x1b[?2004h\n") == ["login:"]


def test_no_fuzzed_string_leaves_a_control_character() -> None:
    pieces = ["\x1b", "[", "]", "P", "\\", "\x07", "\x9b", "\x9c", "\x9d", "\r", "\n", "0", ";", "?", " ", "m", "a",
              "\x00", "\x7f", "\x85", "c", "(", "#"]
    seed = 12345
    for _ in range(2000):
        text = ""
        for _ in range(12):
            seed = (seed * 1103515245 + 12345) % 2**31
            text += pieces[seed % len(pieces)]
        assert not CONTROL.search(clean(text).replace("\n", "")), repr(text)
        assert all("\x1b" not in line and "\r" not in line for line in tail(text))


def test_milestones_are_read_from_the_raw_text() -> None:
    assert reached("\x1b[0mLinux version 6.1\r\nWelcome to \x1b[1mDebian\x1b[0m\r\nweb login: ") == [
        "kernel", "userspace", "login"]
