-- Optional JSON columns hold `null` for "none", never `{}`: the store decodes each column into
-- its type, and `{}` would read as an empty container spec instead of the prebuilt runtime.
UPDATE model_versions SET container_spec = 'null' WHERE container_spec = '{}';
UPDATE model_versions SET predict_schemata = 'null' WHERE predict_schemata = '{}';
