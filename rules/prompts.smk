# Stage: prompts. COCO captions (pycocotools) -> a fixed, seeded prompt set; for an unconditional
# model, the seeded sample list (ids and seeds, no text) in its place, at the same path.

if UNCONDITIONAL:

    rule sample_list:
        output:
            prompts_csv("{promptset}"),
        params:
            seed=config["seed"],
            n=config["prompts"]["n"],
        log:
            "logs/prompts/{promptset}.log",
        conda:
            "../envs/cpu.yaml"
        script:
            "../scripts/make_sample_list.py"

else:

    if config["prompts"]["download_url"]:

        rule fetch_coco_captions:
            output:
                config["prompts"]["captions"],
            params:
                url=config["prompts"]["download_url"],
            log:
                "logs/prompts/fetch_coco_captions.log",
            resources:
                runtime=30,
            conda:
                "../envs/cpu.yaml"
            script:
                "../scripts/fetch_coco_captions.py"

    rule prompts:
        input:
            captions=config["prompts"]["captions"],
        output:
            prompts_csv("{promptset}"),
        params:
            seed=config["seed"],
            n=config["prompts"]["n"],
            min_words=config["prompts"]["min_words"],
            generic_phrases=config["prompts"]["generic_phrases"],
            prefix=config["prompts"]["prefix"],
            suffix=config["prompts"]["suffix"],
        log:
            "logs/prompts/{promptset}.log",
        conda:
            "../envs/cpu.yaml"
        script:
            "../scripts/make_prompts.py"
