# ruff: noqa: E501  (a data table: one concept per line reads better than wrapped lines)
"""Curated vocabularies that let Japanese and English texts, and business and technical words, meet.

Each line is ``concept: japanese forms | english forms``. Every form of a line makes the analyser
emit the same concept term (``~concept``), so ドローン, 無人航空機 and "drone" share a term and a
Japanese need can find an English seed without a translation. The tables hold general technical
vocabulary of the network's fields (shared.reference TECHNOLOGY_FIELDS), not words picked for any
one profile; a line is worth adding when the word is common in seeds or needs of its field.

Forms:
- katakana forms are whole words: they match only where the katakana run is that word or splits
  into known words (センサー in ガスセンサー, never ジュース inside モジュール); a trailing long vowel
  mark is optional (モータ = モーター) as in JIS Z 8301 spelling;
- forms with kanji or hiragana match anywhere in the text (電池 in 蓄電池); a form written ``=桃``
  matches only a run of exactly that text, for single characters that occur inside unrelated words;
- English forms are lower-case words, light-stemmed like the text (batteries = battery); a form of
  several words matches the words in sequence.

No business-word bridge table (におい → odour, 勘 → forecasting): a table of 20 general entries was
measured on bench/quality and did not help its vocabulary-mismatch needs (nDCG@10 0.836 with it,
0.833 without, within noise), while every such entry can also pull in wrong seeds. The kanji
bigrams already meet business and technical wording halfway (排熱 ↔ 排熱回収).
"""

from __future__ import annotations

TECHNICAL_TERMS = """
sensor: センサー, センサ, 検出器, 感知器 | sensor, sensing, detector
drone: ドローン, 無人航空機, 無人機, マルチコプター | drone, uav, unmanned aerial vehicle, multicopter
motor: モーター, モータ, 電動機 | motor, electric motor
pump: ポンプ | pump
laser: レーザー, レーザ | laser
camera: カメラ, 撮像, 撮影 | camera, imaging
robot: ロボット | robot, robotic, robotics
gripper: ロボットハンド, ハンド, グリッパー, 把持, エンドエフェクタ | gripper, gripping, grasping, end effector, robot hand
battery: バッテリー, 電池, 蓄電池, 二次電池 | battery, cell, accumulator
lithium_ion: リチウムイオン | lithium-ion, li-ion, lithium ion
lithium: リチウム | lithium
fuel_cell: 燃料電池 | fuel cell
solar: 太陽光, 太陽電池, ソーラー | solar, photovoltaic, pv
wind_power: 風力, 風車, 風力発電 | wind turbine, wind power, wind energy
hydrogen: 水素 | hydrogen
heat_pump: ヒートポンプ | heat pump
boiler: ボイラー, ボイラ | boiler
burner: バーナー, バーナ, 燃焼器 | burner, combustion
engine: エンジン, 内燃機関 | engine
turbine: タービン | turbine
generator: 発電機 | generator
power_generation: 発電 | power generation, generating electricity, electricity generation
waste_heat: 排熱, 廃熱, 未利用熱 | waste heat, exhaust heat, heat recovery
heat_storage: 蓄熱, 潜熱 | thermal storage, heat storage, latent heat
phase_change: 相変化 | phase-change, phase change, pcm
thermoelectric: 熱電, ゼーベック | thermoelectric, seebeck
heat_insulation: 断熱 | insulation, thermal insulation
heating: 暖房, 加温, 加熱 | heating
cooling: 冷却, 冷房 | cooling
refrigeration: 冷凍機, 冷蔵, 冷凍 | refrigeration, refrigerated, freezing, frozen
thawing: 解凍 | thawing, thaw
supercooling: 過冷却 | supercooling, supercooled
freshness: 鮮度, 鮮度保持 | freshness
shelf_life: 日持ち, 保存性, 消費期限, 賞味期限, 品質保持期限 | shelf life, shelf-life, shelf-stable
sterilisation: 殺菌, 滅菌, 除菌 | sterilisation, sterilization, sterilising, pasteurisation, disinfection
antibacterial: 抗菌, 抗ウイルス | antibacterial, antimicrobial, antiviral
deodorising: 消臭, 防臭, 脱臭 | deodorising, deodorizing, odour control, odor control
mould: カビ, かび, 抗かび, 防カビ | mould, mold, fungal, antifungal
fermentation: 発酵, 醸造 | fermentation, brewing
yeast: 酵母 | yeast
enzyme: 酵素 | enzyme, enzymatic
lactic_acid_bacteria: 乳酸菌 | lactic acid bacteria, lactobacillus
extraction: 抽出 | extraction
cosmetics: 化粧品, コスメ | cosmetic, cosmetics, skincare
food_material: 食品素材, 食品原料 | food ingredient, food material
dietary_fibre: 食物繊維 | dietary fibre, dietary fiber
protein: たんぱく質, タンパク質 | protein
starch: でん粉, デンプン, でんぷん | starch
texture: 食感, 歯ごたえ | texture, mouthfeel
sugar_content: 糖度 | sugar content, brix
fruit: 果実, 果物, 果汁 | fruit, fruit juice
vegetable: 野菜 | vegetable
rice: =米, 米粉, 稲 | rice
fish: 魚, 魚介, 水産物, 鮮魚 | fish, seafood
aquaculture: 養殖 | aquaculture, fish farming, fish farm
livestock: 畜産, 乳牛, 家畜, 牛 | livestock, cattle, cow, dairy
greenhouse: 施設園芸, ハウス栽培, 温室 | greenhouse, protected horticulture
harvest: 収穫 | harvest, harvesting
agriculture: 農業, 営農 | agriculture, farming, agricultural
pesticide: 農薬 | pesticide, agrochemical
wildlife: 鳥獣, 獣害, イノシシ, シカ | wildlife, wild boar, deer
packaging: 包装 | packaging, packaging film
plastic: プラスチック, 樹脂 | plastic, resin, polymer
bioplastic: 生分解, バイオマスプラスチック, 生分解性 | biodegradable, compostable, bioplastic, bio-based
polypropylene: ポリプロピレン | polypropylene
polyester: ポリエステル | polyester
nylon: ナイロン | nylon, polyamide
cellulose_nanofibre: セルロースナノファイバー | cellulose nanofibre, cellulose nanofiber, cnf
cfrp: 炭素繊維, 炭素繊維強化プラスチック | carbon fibre, carbon fiber, cfrp
composite: 複合材料, 複合材 | composite
fibre: 繊維 | fibre, fiber, textile, fabric
rubber: ゴム | rubber, elastomer
vulcanisation: 加硫 | vulcanisation, vulcanization, curing of rubber
coating: コーティング, 塗料, 塗装, 塗膜 | coating, paint, painting
adhesion: 密着, 接着 | adhesion, adhesive, bonding
corrosion: 腐食, 防食, さび, 錆 | corrosion, anticorrosion, rust
water_repellent: 撥水 | water-repellent, hydrophobic
surface_treatment: 表面処理, 表面改質 | surface treatment, surface modification
plasma: プラズマ | plasma
catalyst: 触媒, 光触媒 | catalyst, photocatalyst, catalytic
adsorption: 吸着 | adsorption, adsorbent
membrane: 膜, メンブレン | membrane
nanoparticle: ナノ粒子 | nanoparticle
nanobubble: ナノバブル, マイクロバブル | nanobubble, microbubble
metal: 金属 | metal, metallic
aluminium: アルミニウム, アルミ | aluminium, aluminum
copper: =銅 | copper
steel: 鋼, 鉄鋼, 鋼材, 鉄骨 | steel
magnesium: マグネシウム | magnesium
titanium: チタン | titanium
alloy: 合金 | alloy
casting: 鋳造, 鋳物, ダイカスト | casting, die casting, foundry
porosity: 鋳巣, 引け巣 | porosity, shrinkage cavity
welding: 溶接, 接合 | welding, joining, weld
friction_stir: 摩擦攪拌, 摩擦撹拌 | friction stir
machining: 切削, 機械加工, フライス | machining, milling, cutting
chatter: びびり | chatter, regenerative chatter
cutting_tool: 工具, エンドミル | cutting tool, end mill, tool holder
additive_manufacturing: 積層造形, 3dプリンタ, 3dプリンター, 3dプリント | additive manufacturing, 3d printing, 3d printer, 3d-printed
die: 金型 | die, mould tooling, mold tooling, tooling
sheet_metal: 板金, プレス加工 | sheet metal, press forming, stamping
injection_moulding: 射出成形 | injection moulding, injection molding
moulding: 成形 | moulding, molding, forming
lightweight: 軽量, 軽量化 | lightweight, weight reduction
prototype: 試作 | prototype, prototyping
low_volume: 少量生産, 多品種少量 | low-volume, small-batch, small batch
spare_parts: 補修部品, 交換部品, 保守部品 | spare part, replacement part
bearing: 軸受, ベアリング | bearing, rolling bearing
spindle: 主軸, スピンドル | spindle
vibration: 振動 | vibration, vibrational
noise: 騒音, 低騒音 | noise, noise reduction
active_noise_control: ノイズキャンセリング, 能動騒音制御 | active noise control, noise cancelling, noise cancellation
sound: 音響, 音波 | acoustic, sound
ultrasound: 超音波 | ultrasonic, ultrasound
microwave: マイクロ波 | microwave
infrared: 赤外, 赤外線, 近赤外 | infrared, near-infrared, nir
spectroscopy: 分光 | spectroscopy, spectral, spectrometer, spectroscopic
radar: レーダー, レーダ | radar
lidar: ライダー, ライダ | lidar
satellite: 衛星 | satellite
gnss: gps, 測位 | gnss, gps, positioning
optical_fibre: 光ファイバー, 光ファイバ | optical fibre, optical fiber, fibre optic
wireless: 無線, ワイヤレス | wireless, radio
iot: iot, 遠隔監視 | iot, internet of things, remote monitoring
rfid: rfid, icタグ | rfid
led: led, 発光ダイオード | led, light-emitting diode
lighting: 照明, 調光 | lighting, lighting control, dimming
semiconductor: 半導体 | semiconductor
power_electronics: パワー半導体, インバータ | power electronics, inverter
microgrid: マイクログリッド | microgrid, mini-grid
power_grid: 電力系統, 系統 | power grid, grid
energy_saving: 省エネ, 省エネルギー, 節電 | energy saving, energy-saving, energy efficiency
decarbonisation: 脱炭素, カーボンニュートラル | decarbonisation, decarbonization, carbon neutral, net zero
co2: co2, 二酸化炭素 | co2, carbon dioxide
co2_capture: co2回収, 二酸化炭素回収 | carbon capture, co2 capture
biomass: バイオマス, 木質ペレット | biomass, wood pellet
biofuel: バイオディーゼル, バイオ燃料 | biodiesel, biofuel
geothermal: 地熱, 温泉熱, 地中熱 | geothermal, ground-source, hot spring
binary_cycle: バイナリー発電, 有機ランキンサイクル | binary cycle, organic rankine cycle, orc
recycling: リサイクル, 再資源化, 資源循環, 再生 | recycling, recycled, recycle
chemical_recycling: ケミカルリサイクル, 解重合 | chemical recycling, depolymerisation, depolymerization
pyrolysis: 熱分解 | pyrolysis
waste: 廃棄物, 廃プラスチック | waste
wastewater: 排水, 廃水, 下水 | wastewater, sewage, effluent
sewer: 下水管, 下水道, 管路 | sewer, sewer pipe, sewerage
water_pipe: 水道管, 配水管, 埋設管, 水道 | water main, water pipe, pipeline
leak: 漏水, 漏れ, 漏えい | leak, leakage
water_quality: 水質 | water quality
dissolved_oxygen: 溶存酸素 | dissolved oxygen
voc: voc, 揮発性有機化合物 | voc, volatile organic compound
exhaust_gas: 排ガス, 排気 | exhaust, exhaust gas, flue gas
concrete: コンクリート | concrete
bridge: 橋梁, 橋 | bridge
crack: ひび割れ, き裂, 亀裂 | crack, cracking
inspection: 点検, 検査, 検反 | inspection, inspecting
visual_inspection: 外観検査, 画像検査 | visual inspection, appearance inspection, optical inspection
non_destructive: 非破壊 | non-destructive, nondestructive, ndt
infrastructure: インフラ, 社会基盤 | infrastructure
construction: 建設, 建築, 土木 | construction, building, civil engineering
timber: 木材, 間伐材, 木質, スギ | timber, wood, wooden, lumber
clt: 直交集成板, clt | cross-laminated timber, clt
snow: 雪, 融雪, 着雪, 積雪 | snow, snowmelt, snow load
ice: 凍結, 着氷, 結氷 | ice, icing, freezing
road: 道路, 路面, 舗装 | road, road surface, pavement
condensation: 結露 | condensation
window: 窓, 窓ガラス, 内窓 | window, glazing
ventilation: 換気 | ventilation
air_conditioning: 空調 | air conditioning, hvac
humidity: 湿度 | humidity
temperature: 温度 | temperature
temperature_logging: 温度記録, 温度履歴 | temperature logging, temperature record, temperature indicator
cold_chain: 低温物流, コールドチェーン | cold chain, cold-chain
logistics: 物流, 配送, 運送 | logistics, delivery, shipping
vehicle_routing: 配送計画, 配車, 配車計画, ルート最適化 | vehicle routing, route planning, dispatch, routing
optimisation: 最適化 | optimisation, optimization, optimal
scheduling: スケジューリング, 生産計画 | scheduling
forecasting: 予測, 予報 | forecasting, forecast, prediction, predicting
demand_forecasting: 需要予測 | demand forecasting, demand forecast
machine_learning: 機械学習, 深層学習, ディープラーニング | machine learning, deep learning, neural network
ai: ai, 人工知能 | ai, artificial intelligence
image_processing: 画像処理, 画像認識, 画像解析, 画像計測 | image processing, image recognition, computer vision, image analysis
anomaly_detection: 異常検知, 異常検出 | anomaly detection, fault detection
predictive_maintenance: 予知保全, 状態監視, 故障予知, 劣化診断 | predictive maintenance, condition monitoring, fault diagnosis, prognostics
remaining_life: 寿命予測, 余寿命, 残存寿命 | remaining useful life, lifetime prediction, state of health, soh
degradation: 劣化 | degradation, ageing, aging, deterioration
speech_recognition: 音声認識 | speech recognition, transcription, speech-to-text
natural_language: 自然言語処理 | natural language processing, nlp
minutes: 議事録 | minutes, meeting minutes
summarisation: 要約 | summarisation, summarization, summary generation
dialect: 方言 | dialect
authentication: 認証, 真贋, 個体識別 | authentication, identification, anti-counterfeiting
counterfeit: 偽造, 模倣品 | counterfeit, forgery, fake
traceability: トレーサビリティ, 追跡 | traceability, provenance, tracking
blockchain: ブロックチェーン | blockchain
smartphone: スマートフォン, スマホ | smartphone, mobile phone
tablet: タブレット | tablet
ar: 拡張現実, ar | augmented reality, ar
photogrammetry: フォトグラメトリ, 三次元計測, 3次元計測, 点群 | photogrammetry, 3d reconstruction, 3d measurement, point cloud
dimension: 寸法 | dimension, dimensional
measurement: 計測, 測定 | measurement, measuring
colour: 色, 色彩, 測色, 色差 | colour, color, colorimetry
printing: 印刷 | printing, print
ink: インキ, インク | ink
wearable: ウェアラブル | wearable
heart_rate: 心拍 | heart rate, heartbeat, pulse
body_temperature: 体温, 深部体温 | body temperature, core temperature
heat_stroke: 熱中症, 暑熱 | heat stroke, heatstroke, heat stress, heat illness
fall_detection: 転倒検知, 離床 | fall detection, bed exit
elderly_care: 介護, 見守り, 高齢者 | elderly care, nursing care, care home, aged care
infusion: 輸液, 点滴 | infusion, intravenous, iv drip, drip
nurse: 看護 | nurse, nursing
medical_device: 医療機器 | medical device
vaccine: ワクチン | vaccine
pharmaceutical: 医薬品, 医薬 | pharmaceutical, drug
micromachining: 微細加工 | micromachining, micro-machining
ultrashort_pulse: フェムト秒, 超短パルス, ピコ秒 | femtosecond, ultrashort pulse, picosecond
heat_affected_zone: 熱影響 | heat-affected zone, thermal damage, haz
red_tide: 赤潮 | red tide, harmful algal bloom
plankton: プランクトン | plankton
buoy: ブイ | buoy
ocean: 海洋, 海水 | ocean, marine, seawater
disaster: 防災, 災害 | disaster, disaster prevention
flood: 洪水, 浸水, 大雨 | flood, flooding, heavy rain
earthquake: 地震, 耐震 | earthquake, seismic
safety: 安全 | safety
hygiene: 衛生 | hygiene, hygienic, sanitary
software: ソフトウェア, ソフト | software
database: データベース | database
cloud: クラウド | cloud
security: セキュリティ | security, cybersecurity
communication: 通信 | communication, telecommunication
edge_computing: エッジ | edge computing, edge ai
simulation: シミュレーション, 数値解析 | simulation, numerical analysis
design: 設計 | design
automation: 自動化, 省力化, 自動 | automation, automated, automatic, labour saving, labor saving
digital_twin: デジタルツイン | digital twin
control: 制御 | control, controller
hydraulic: 油圧 | hydraulic
pneumatic: 空気圧 | pneumatic
actuator: アクチュエータ, アクチュエーター | actuator
conveyor: コンベア, コンベヤ | conveyor
electric_vehicle: 電気自動車, ev | electric vehicle, ev
automotive: 自動車 | automotive, car, vehicle
aircraft: 航空機 | aircraft, aerospace
ship: 船舶, 造船 | ship, shipbuilding, vessel
railway: 鉄道 | railway, railroad
bicycle: 自転車 | bicycle, e-bike, bike
"""
