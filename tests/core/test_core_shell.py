

def test_device_kind_is_each_name_up_to_its_colon_once():
    from lrfind_core.shell import device_kind

    assert device_kind(["cpu"]) == "cpu"
    assert device_kind(["cpu:0", "cpu:1"]) == "cpu"
    assert device_kind(["cuda:0"]) == "cuda"
    assert device_kind(["cuda:1", "cpu:0", "cuda:0"]) == "cuda, cpu"
