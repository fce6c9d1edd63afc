"""Recipes: every shipped recipe validates and dry-runs through the
Snakemake API; bad recipes fail before any work, naming file and field."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake

from chunkindex.recipe import RecipeError, load_recipe, validate_config

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_the_expected_recipes_ship():
    names = {p.stem for p in RECIPES}
    assert {"ghrsst", "bran2023", "ghrsst-demo", "ghrsst-demo-deflate", "bran-demo"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.id == path.stem
    assert recipe.variables


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_dry_runs_through_the_snakemake_api(path):
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1),
                                config_settings=ConfigSettings(config={"dataset": path.stem}),
                                snakefile=REPO / "Snakefile", workdir=REPO)
        dag = workflow.dag()
        dag.execute_workflow(executor="dryrun")


def test_real_recipes_point_at_the_real_archives():
    ghrsst = load_recipe(REPO / "recipes/ghrsst.yaml")
    assert ghrsst.source.url == "s3://us-west-2.opendata.source.coop/ausantarctic/ghrsst-mur-v2"
    assert ghrsst.source.store_options["skip_signature"] is True
    assert ghrsst.source.pattern.endswith(
        "{time:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_{variable}.tif")
    bran = load_recipe(REPO / "recipes/bran2023.yaml")
    assert bran.source.url == "https://thredds.nci.org.au/thredds/fileServer/gb6/BRAN/BRAN2023/daily"
    assert bran.source.pattern == "ocean_temp_{time:%Y}_{time:%m}.nc"
    assert bran.source.template is not None and bran.source.template.step == "month"
    assert bran.variable_names == ("temp",)


def _broken(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load((REPO / "recipes/ghrsst-demo.yaml").read_text())
    edit(doc)
    path = tmp_path / "ghrsst-demo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_typo_names_the_recipe_the_field_and_a_suggestion(tmp_path):
    path = _broken(tmp_path, lambda d: d["source"].update(patern=d["source"].pop("pattern")))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert str(path) in text
    assert "field source: unknown key 'patern' (did you mean 'pattern'?)" in text


def test_a_wrong_type_names_the_field_and_what_was_expected(tmp_path):
    path = _broken(tmp_path, lambda d: d["validation"].update(sample_chunks="many"))
    with pytest.raises(RecipeError, match=r"field validation.sample_chunks: 'many' is not of type 'integer'"):
        load_recipe(path)


def test_a_missing_field_is_named(tmp_path):
    path = _broken(tmp_path, lambda d: d.pop("format"))
    with pytest.raises(RecipeError, match=r"field format: missing \(required\)"):
        load_recipe(path)


def test_an_unknown_format_lists_the_choices(tmp_path):
    path = _broken(tmp_path, lambda d: d.update(format="jpeg"))
    with pytest.raises(RecipeError, match=r"field format: 'jpeg' is not one of \['cog', 'netcdf4', 'hdf5'\]"):
        load_recipe(path)


def test_a_vrt_over_tiff_bands_is_for_cog_recipes_only(tmp_path):
    path = _broken(tmp_path, lambda d: d.update(format="netcdf4", output={**d["output"], "kinds": ["vrt"]}))
    with pytest.raises(RecipeError, match="field output.kinds: `vrt`.*format cog only, not netcdf4"):
        load_recipe(path)


def test_id_must_match_the_file_name(tmp_path):
    path = _broken(tmp_path, lambda d: d.update(id="other"))
    with pytest.raises(RecipeError, match="must equal the file name"):
        load_recipe(path)


def test_the_workflow_refuses_a_bad_recipe_before_any_work(tmp_path):
    _broken(tmp_path, lambda d: d["output"].update(kinds=["kerchunk-parquet", "zip"]))
    result = run_snakemake("-n", "--config", "dataset=ghrsst-demo", f"recipes_dir={tmp_path}", check=False)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert f"recipe {tmp_path}/ghrsst-demo.yaml is not valid" in text
    assert "field output.kinds[1]: 'zip' is not one of" in text


def test_an_unknown_dataset_lists_the_known_ones():
    result = run_snakemake("-n", "--config", "dataset=nosuch", check=False)
    assert result.returncode != 0
    assert "no recipe recipes/nosuch.yaml; known datasets:" in result.stdout + result.stderr


def test_config_schema_rejects_unknown_keys():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate_config(config)
    config["datset"] = "x"
    with pytest.raises(RecipeError, match="unknown key 'datset' \\(did you mean 'dataset'\\?\\)"):
        validate_config(config)


def test_every_schema_field_has_a_description():
    def walk(node, where):
        if isinstance(node, dict):
            if "properties" in node:
                for name, sub in node["properties"].items():
                    assert "description" in sub, f"{where}.{name} has no description"
                    walk(sub, f"{where}.{name}")
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    walk(node[key], f"{where}[{key}]")
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is not None, f"{where} allows unknown keys"

    for name in ("recipe", "config"):
        schema = yaml.safe_load((REPO / f"chunkindex/schemas/{name}.schema.yaml").read_text())
        assert schema["$schema"].endswith("draft/2020-12/schema")
        walk(schema, name)


def test_snakemake_lint_is_clean():
    for dataset in ("ghrsst-demo", "bran-demo", "fixtures", "bench"):
        result = run_snakemake("--lint", "--config", f"dataset={dataset}", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
