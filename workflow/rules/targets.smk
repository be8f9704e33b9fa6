rule records:
    input:
        get_record_targets(),


rule macs:
    input:
        get_macs_targets(),


rule search:
    input:
        get_search_targets(),
