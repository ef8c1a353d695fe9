from berth.sys.mountinfo import unescape


def test_unescape_octal_escapes_the_kernel_writes():
    assert unescape(r"/mnt/a\040b\011c\012d\134e") == "/mnt/a b\tc\nd\\e"
    assert unescape("/plain") == "/plain"
    assert unescape("/odd\\04") == "/odd\\04"  # not a full escape: kept as is
